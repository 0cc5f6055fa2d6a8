//! Class-folder datasets with Keras `flow_from_directory` semantics: each sub-folder of the
//! root is a class, sorted names give the labels, files are found recursively inside each
//! class folder, hidden files and folders are skipped, and symbolic links are followed
//! without looping. Every non-hidden file is a sample; one that turns out not to be an image
//! is reported with its reason when decoded, never silently dropped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{DataError, LabeledSet, Sample};

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn scan(root: &Path) -> Result<LabeledSet, DataError> {
    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_err(root))? {
        let entry = entry.map_err(io_err(root))?;
        let path = entry.path();
        if is_hidden(&path) || !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        classes.push((name, path));
    }
    classes.sort();
    match classes.len() {
        0 => {
            return Err(DataError::NoClasses {
                root: root.to_path_buf(),
            });
        }
        1 => {
            return Err(DataError::SingleClass {
                root: root.to_path_buf(),
                class: classes[0].0.clone(),
            });
        }
        _ => {}
    }
    let mut samples = Vec::new();
    for (label, (_, folder)) in classes.iter().enumerate() {
        let mut files = Vec::new();
        let mut seen = HashSet::new();
        walk(folder, &mut files, &mut seen)?;
        if files.is_empty() {
            return Err(DataError::EmptyClass {
                folder: folder.clone(),
            });
        }
        files.sort();
        samples.extend(files.into_iter().map(|path| Sample { path, label }));
    }
    Ok(LabeledSet {
        source: root.to_path_buf(),
        classes: classes.into_iter().map(|(n, _)| n).collect(),
        samples,
    })
}

/// Every non-hidden file under `dir`, recursively, sorted; symlinks followed without looping.
pub fn files_under(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    walk(dir, &mut files, &mut HashSet::new())?;
    files.sort();
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut HashSet<PathBuf>) -> Result<(), DataError> {
    let canonical = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    if !seen.insert(canonical) {
        return Ok(()); // a symlink loop or a folder linked twice
    }
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if is_hidden(&path) {
            continue;
        }
        // `is_dir`/`is_file` follow symlinks; a dangling link is neither and is reported.
        if path.is_dir() {
            walk(&path, out, seen)?;
        } else if path.is_file() {
            out.push(path);
        } else if path.is_symlink() {
            out.push(path); // dangling: decoding will report it with the reason
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn classes_sorted_nested_files_found_hidden_skipped() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("male/a.jpg"));
        touch(&d.path().join("male/sub/deeper/b.png"));
        touch(&d.path().join("male/.hidden.jpg"));
        touch(&d.path().join("female/c.jpg"));
        touch(&d.path().join(".cache/d.jpg"));
        let set = scan(d.path()).unwrap();
        assert_eq!(set.classes, vec!["female", "male"]);
        let names: Vec<_> = set
            .samples
            .iter()
            .map(|s| {
                (
                    s.path.file_name().unwrap().to_str().unwrap().to_string(),
                    s.label,
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("c.jpg".into(), 0),
                ("a.jpg".into(), 1),
                ("b.png".into(), 1)
            ]
        );
    }

    #[test]
    fn symlink_loops_terminate() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("a/x.jpg"));
        touch(&d.path().join("b/y.jpg"));
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("a/loop")).unwrap();
        let set = scan(d.path()).unwrap();
        assert_eq!(set.samples.len(), 2);
    }

    #[test]
    fn empty_and_single_class_are_errors_naming_the_folder() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("a/x.jpg"));
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("only one class ('a')"), "{e}");
        std::fs::create_dir_all(d.path().join("b")).unwrap();
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("/b has no images"), "{e}");
    }
}
