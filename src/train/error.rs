//! What can stop a training run, each with the file or epoch it concerns.

use std::path::{Path, PathBuf};

use crate::data::DataError;
use crate::weights::WeightsError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Backend(#[from] crate::device::BackendUnavailable),
    #[error(transparent)]
    Busy(#[from] super::run_lock::LockError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(
        "the training loss became {loss} in epoch {epoch}; training stopped. The best checkpoint so far is kept in {best}. Try a lower --lr."
    )]
    NonFiniteLoss {
        epoch: usize,
        loss: f32,
        best: PathBuf,
    },
    #[error(
        "interrupted in epoch {epoch}; nothing is half-written: {}. Resume with `faceattr train --resume {}`",
        match done { 0 => "no epoch was finished".to_string(), d => format!("{} holds epoch {d}", last.display()) },
        run.display()
    )]
    Interrupted {
        epoch: usize,
        done: usize,
        last: PathBuf,
        run: PathBuf,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}
