//! The one error type of weight import: every variant names the file.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: not a weights file faceattr knows (expected Keras .h5, PyTorch .pth or .safetensors)"
    )]
    UnknownFormat { path: PathBuf },
    #[error("{path}: malformed {format} file: {reason}")]
    Malformed {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("{path}: tensor '{tensor}' is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor '{tensor}' has shape {found}, expected {expected}")]
    WrongShape {
        path: PathBuf,
        tensor: String,
        expected: String,
        found: String,
    },
    #[error("{path}: tensor '{tensor}' has a non-finite value ({value}) at index {index}")]
    NonFinite {
        path: PathBuf,
        tensor: String,
        index: usize,
        value: f32,
    },
    #[error("{path}: tensor '{tensor}' has unsupported element type {dtype}")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error(
        "{path}: the pickle uses {what}, which faceattr refuses to run (it only rebuilds tensors and dicts)"
    )]
    UnsafePickle { path: PathBuf, what: String },
}

impl WeightsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        WeightsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn malformed(path: &Path, format: &'static str, reason: impl Into<String>) -> Self {
        WeightsError::Malformed {
            path: path.to_path_buf(),
            format,
            reason: reason.into(),
        }
    }
}
