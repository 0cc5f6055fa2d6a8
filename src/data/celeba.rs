//! CelebA: balanced train/valid/test sets for one of the 40 attributes, drawn from the
//! official partitions (`list_eval_partition.txt`: 0 train, 1 valid, 2 test) with a seed.
//! Both annotation files are validated; a malformed row or a listed image that is missing is
//! reported and left out, never fatal and never silently dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::{DataError, LabeledSet, Sample};

pub const PARTITIONS: [&str; 3] = ["train", "valid", "test"];
/// The reference's balanced sizes per class: 16 002 / 4 002 / 500.
pub const REFERENCE_PER_CLASS: [usize; 3] = [16_002, 4_002, 500];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerClass {
    Count(usize),
    /// The whole partition, unbalanced.
    All,
}

impl std::str::FromStr for PerClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "all" {
            return Ok(PerClass::All);
        }
        s.parse()
            .map(PerClass::Count)
            .map_err(|_| format!("'{s}' is not a number or 'all'"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// train.csv / valid.csv / test.csv manifests pointing at the original images.
    Manifest,
    /// train/<class>/… folders of symbolic links to the original images.
    Symlinks,
}

#[derive(Debug, Serialize, Clone)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct CelebaReport {
    pub classes: Vec<String>,
    /// Images per class and partition actually written: [partition][class].
    pub counts: [Vec<usize>; 3],
    /// Rows that could not be used, with the reason.
    pub problems: Vec<Problem>,
    pub outputs: Vec<PathBuf>,
}

/// Class folder names for an attribute: `Male` -> female/male, else not_<attr>/<attr>.
pub fn class_names(attr: &str) -> (String, String) {
    if attr == "Male" {
        ("female".into(), "male".into())
    } else {
        let a = attr.to_lowercase();
        (format!("not_{a}"), a)
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// `list_attr_celeba.txt` for one attribute: file name -> +1/-1.
pub fn read_attribute(
    path: &Path,
    attr: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<(String, bool)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines();
    let declared: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| invalid(path, "line 1 must be the number of images"))?;
    let names: Vec<&str> = lines
        .next()
        .ok_or_else(|| invalid(path, "line 2 must list the attribute names"))?
        .split_whitespace()
        .collect();
    let col = names.iter().position(|n| *n == attr).ok_or_else(|| {
        invalid(
            path,
            format!("no attribute '{attr}'; the file has: {}", names.join(", ")),
        )
    })?;
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let line_no = i + 3;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let problem = |reason: String| Problem {
            file: path.to_path_buf(),
            line: line_no,
            reason,
        };
        if fields.len() != names.len() + 1 {
            problems.push(problem(format!(
                "{} values for {} attributes",
                fields.len() - 1,
                names.len()
            )));
            continue;
        }
        match fields[col + 1] {
            "1" => out.push((fields[0].to_string(), true)),
            "-1" => out.push((fields[0].to_string(), false)),
            v => problems.push(problem(format!("'{attr}' is '{v}', expected 1 or -1"))),
        }
    }
    if out.len() + problems.len() != declared {
        problems.push(Problem {
            file: path.to_path_buf(),
            line: 1,
            reason: format!(
                "declares {declared} images but lists {}",
                out.len() + problems.len()
            ),
        });
    }
    Ok(out)
}

/// `list_eval_partition.txt`: file name -> 0/1/2.
pub fn read_partition(
    path: &Path,
    problems: &mut Vec<Problem>,
) -> Result<HashMap<String, usize>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => {}
            [file, p] if matches!(*p, "0" | "1" | "2") => {
                out.insert(file.to_string(), p.parse().unwrap_or(0));
            }
            _ => problems.push(Problem {
                file: path.to_path_buf(),
                line: i + 1,
                reason: format!("expected 'file 0|1|2', found '{line}'"),
            }),
        }
    }
    Ok(out)
}

/// Marks the split as CelebA-aligned when its images are the aligned set (`img_align_celeba`,
/// whose crops are 178 x 218), so that a model trained on it aligns faces in `predict`.
fn write_marker(out: &Path, images: &Path, attr: &str) -> Result<(), DataError> {
    let aligned_folder = images.file_name().is_some_and(|n| n == "img_align_celeba");
    let first = std::fs::read_dir(images).ok().and_then(|mut d| {
        d.find_map(|e| {
            let p = e.ok()?.path();
            let ext = p.extension()?.to_str()?.to_ascii_lowercase();
            (p.is_file() && matches!(ext.as_str(), "jpg" | "jpeg" | "png")).then_some(p)
        })
    });
    let size = first.and_then(|p| image::image_dimensions(&p).ok());
    let aligned = aligned_folder || size == Some((178, 218));
    super::framing::write(
        out,
        &super::framing::DatasetInfo {
            framing: if aligned {
                crate::preprocess::Framing::CelebaAligned
            } else {
                crate::preprocess::Framing::Whole
            },
            size_hw: size.map(|(w, h)| (h as usize, w as usize)),
            made_by: format!("faceattr {} data celeba", env!("CARGO_PKG_VERSION")),
            details: serde_json::json!({ "images": images, "attribute": attr }),
        },
    )
}

/// Builds the split and writes it under `out`.
pub fn build(
    root: &Path,
    attr: &str,
    out: &Path,
    per_class: [PerClass; 3],
    seed: u64,
    layout: Layout,
) -> Result<CelebaReport, DataError> {
    let mut problems = Vec::new();
    let attrs = read_attribute(&root.join("list_attr_celeba.txt"), attr, &mut problems)?;
    let parts = read_partition(&root.join("list_eval_partition.txt"), &mut problems)?;
    let images = if root.join("img_align_celeba").is_dir() {
        root.join("img_align_celeba")
    } else {
        root.to_path_buf()
    };
    let (neg, pos) = class_names(attr);
    let mut classes = vec![neg.clone(), pos.clone()];
    classes.sort();
    let label_of = |positive: bool| {
        classes
            .iter()
            .position(|c| c == if positive { &pos } else { &neg })
            .unwrap_or(0)
    };

    // [partition][label] -> file names
    let mut pools: [Vec<Vec<String>>; 3] = std::array::from_fn(|_| vec![Vec::new(), Vec::new()]);
    for (file, positive) in attrs {
        let Some(&p) = parts.get(&file) else {
            problems.push(Problem {
                file: root.join("list_eval_partition.txt"),
                line: 0,
                reason: format!("{file} has no partition"),
            });
            continue;
        };
        if !images.join(&file).is_file() {
            problems.push(Problem {
                file: images.join(&file),
                line: 0,
                reason: "listed but missing".into(),
            });
            continue;
        }
        pools[p][label_of(positive)].push(file);
    }
    std::fs::create_dir_all(out).map_err(|source| DataError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut counts: [Vec<usize>; 3] = std::array::from_fn(|_| vec![0, 0]);
    let mut outputs = Vec::new();
    for (p, name) in PARTITIONS.iter().enumerate() {
        let mut samples = Vec::new();
        for (label, pool) in pools[p].iter_mut().enumerate() {
            pool.sort();
            pool.shuffle(&mut rng);
            let take = match per_class[p] {
                PerClass::All => pool.len(),
                PerClass::Count(n) => {
                    if n > pool.len() {
                        problems.push(Problem {
                            file: root.join("list_attr_celeba.txt"),
                            line: 0,
                            reason: format!(
                                "{name}: asked for {n} '{}' images, only {} exist",
                                classes[label],
                                pool.len()
                            ),
                        });
                    }
                    n.min(pool.len())
                }
            };
            let mut chosen: Vec<&String> = pool[..take].iter().collect();
            chosen.sort();
            counts[p][label] = take;
            samples.extend(chosen.into_iter().map(|f| Sample {
                path: images.join(f),
                label,
            }));
        }
        let set = LabeledSet {
            source: out.join(name),
            classes: classes.clone(),
            samples,
        };
        match layout {
            Layout::Manifest => {
                let path = out.join(format!("{name}.csv"));
                super::manifest::write(&path, &set)?;
                outputs.push(path);
            }
            Layout::Symlinks => {
                for class in &classes {
                    let d = out.join(name).join(class);
                    std::fs::create_dir_all(&d).map_err(|source| DataError::Io {
                        path: d.clone(),
                        source,
                    })?;
                }
                for s in &set.samples {
                    let link = out
                        .join(name)
                        .join(&classes[s.label])
                        .join(s.path.file_name().unwrap_or_default());
                    let target =
                        std::fs::canonicalize(&s.path).map_err(|source| DataError::Io {
                            path: s.path.clone(),
                            source,
                        })?;
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(&target, &link).map_err(|source| DataError::Io {
                        path: link.clone(),
                        source,
                    })?;
                }
                outputs.push(out.join(name));
            }
        }
    }
    write_marker(out, &images, attr)?;
    Ok(CelebaReport {
        classes,
        counts,
        problems,
        outputs,
    })
}
