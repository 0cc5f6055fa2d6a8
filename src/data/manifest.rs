//! CSV manifests: `path,label` with a header, one image per row; relative paths resolve
//! against the manifest's folder. Labels are class names; their sorted order gives the label
//! indices, as for class folders.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{DataError, LabeledSet, Sample};

pub fn read(path: &Path) -> Result<LabeledSet, DataError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| DataError::Manifest {
            path: path.to_path_buf(),
            line: 1,
            reason: e.to_string(),
        })?;
    let headers = rdr
        .headers()
        .map_err(|e| DataError::Manifest {
            path: path.to_path_buf(),
            line: 1,
            reason: e.to_string(),
        })?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(pc), Some(lc)) = (col("path"), col("label")) else {
        return Err(DataError::Manifest {
            path: path.to_path_buf(),
            line: 1,
            reason: format!(
                "header must name the columns 'path' and 'label', found {:?}",
                headers.iter().collect::<Vec<_>>()
            ),
        });
    };
    let mut rows: Vec<(PathBuf, String)> = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| DataError::Manifest {
            path: path.to_path_buf(),
            line,
            reason: e.to_string(),
        })?;
        let (Some(p), Some(l)) = (rec.get(pc), rec.get(lc)) else {
            return Err(DataError::Manifest {
                path: path.to_path_buf(),
                line,
                reason: "missing path or label".into(),
            });
        };
        if p.is_empty() || l.is_empty() {
            return Err(DataError::Manifest {
                path: path.to_path_buf(),
                line,
                reason: "empty path or label".into(),
            });
        }
        let p = PathBuf::from(p);
        rows.push((
            if p.is_absolute() { p } else { base.join(p) },
            l.to_string(),
        ));
    }
    let classes: Vec<String> = rows
        .iter()
        .map(|(_, l)| l.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    match classes.len() {
        0 => {
            return Err(DataError::Invalid {
                path: path.to_path_buf(),
                reason: "the manifest lists no images".into(),
            });
        }
        1 => {
            return Err(DataError::SingleClass {
                root: path.to_path_buf(),
                class: classes[0].clone(),
            });
        }
        _ => {}
    }
    let samples = rows
        .into_iter()
        .map(|(p, l)| Sample {
            path: p,
            label: classes.iter().position(|c| *c == l).unwrap_or(0),
        })
        .collect();
    Ok(LabeledSet {
        source: path.to_path_buf(),
        classes,
        samples,
    })
}

/// Writes a manifest (absolute or relative paths as given).
pub fn write(path: &Path, set: &LabeledSet) -> Result<(), DataError> {
    let io = |e: csv::Error| DataError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(io)?;
    w.write_record(["path", "label"]).map_err(io)?;
    for s in &set.samples {
        w.write_record([
            s.path.to_string_lossy().as_ref(),
            set.classes[s.label].as_str(),
        ])
        .map_err(io)?;
    }
    w.flush().map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_manifest_folder() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("split.csv");
        std::fs::write(
            &m,
            "path,label\nimgs/a.jpg,male\n/abs/b.jpg,female\n\"imgs/c, d.jpg\",male\n",
        )
        .unwrap();
        let set = read(&m).unwrap();
        assert_eq!(set.classes, vec!["female", "male"]);
        assert_eq!(
            set.samples[0],
            Sample {
                path: d.path().join("imgs/a.jpg"),
                label: 1
            }
        );
        assert_eq!(
            set.samples[1],
            Sample {
                path: PathBuf::from("/abs/b.jpg"),
                label: 0
            }
        );
        assert_eq!(set.samples[2].path, d.path().join("imgs/c, d.jpg"));
    }

    #[test]
    fn bad_header_and_rows_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("m.csv");
        std::fs::write(&m, "file,class\na.jpg,x\n").unwrap();
        assert!(
            read(&m)
                .unwrap_err()
                .to_string()
                .contains("line 1: header must name")
        );
        std::fs::write(&m, "path,label\na.jpg,x\nb.jpg,\n").unwrap();
        let e = read(&m).unwrap_err().to_string();
        assert!(e.contains("line 3: empty path or label"), "{e}");
    }
}
