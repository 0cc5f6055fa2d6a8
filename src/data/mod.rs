//! Data: labelled image sets (class folders or a CSV manifest), decoding by content, the
//! record of bad files, CelebA splits, and the parallel input pipeline.

pub mod bad;
pub mod celeba;
pub mod decode;
pub mod folder;
pub mod framing;
pub mod inspect;
pub mod jpeg_end;
pub mod manifest;
pub mod pipeline;
pub mod synthetic;
pub mod tiff_tags;

use std::path::{Path, PathBuf};

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: usize,
}

/// A labelled image set: class names in label order (sorted, as Keras' flow_from_directory)
/// and the samples.
#[derive(Debug, Clone)]
pub struct LabeledSet {
    /// The folder or manifest it was read from.
    pub source: PathBuf,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: no such file or folder")]
    NotFound(PathBuf),
    #[error(
        "{root}: no class sub-folders (expected e.g. {root}/female/*.jpg and {root}/male/*.jpg)"
    )]
    NoClasses { root: PathBuf },
    #[error("{root}: only one class ('{class}'); a classifier needs at least two")]
    SingleClass { root: PathBuf, class: String },
    #[error("class folder {folder} has no images")]
    EmptyClass { folder: PathBuf },
    #[error("{a} has classes {a_classes:?} but {b} has {b_classes:?}; they must be the same")]
    ClassMismatch {
        a: PathBuf,
        a_classes: Vec<String>,
        b: PathBuf,
        b_classes: Vec<String>,
    },
    #[error("{path}, line {line}: {reason}")]
    Manifest {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("bad image (--on-bad-image fail): {0}")]
    BadImage(#[from] decode::DecodeError),
}

impl LabeledSet {
    /// Reads a class-folder tree or a `.csv` manifest.
    pub fn open(path: &Path) -> Result<LabeledSet, DataError> {
        if path.is_dir() {
            folder::scan(path)
        } else if path.is_file() {
            manifest::read(path)
        } else {
            Err(DataError::NotFound(path.to_path_buf()))
        }
    }

    /// Checks that `other` (validation, test) has the same classes in the same order.
    pub fn check_same_classes(&self, other: &LabeledSet) -> Result<(), DataError> {
        if self.classes == other.classes {
            Ok(())
        } else {
            Err(DataError::ClassMismatch {
                a: self.source.clone(),
                a_classes: self.classes.clone(),
                b: other.source.clone(),
                b_classes: other.classes.clone(),
            })
        }
    }

    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            counts[s.label] += 1;
        }
        counts
    }

    /// A seeded, stratified split into (rest, held-out fraction) for `--valid-fraction`.
    pub fn split(&self, fraction: f64, seed: u64) -> (LabeledSet, LabeledSet) {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.wrapping_add(0x5EED_5A17));
        let (mut keep, mut held) = (Vec::new(), Vec::new());
        for class in 0..self.classes.len() {
            let mut of_class: Vec<&Sample> =
                self.samples.iter().filter(|s| s.label == class).collect();
            of_class.shuffle(&mut rng);
            let n_held = ((of_class.len() as f64) * fraction).round() as usize;
            for (i, s) in of_class.into_iter().enumerate() {
                if i < n_held {
                    held.push(s.clone())
                } else {
                    keep.push(s.clone())
                }
            }
        }
        let mk = |samples: Vec<Sample>, tag: &str| LabeledSet {
            source: PathBuf::from(format!("{} ({tag})", self.source.display())),
            classes: self.classes.clone(),
            samples,
        };
        (mk(keep, "train part"), mk(held, "validation part"))
    }
}
