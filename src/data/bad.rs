//! Bad images lose nothing and hide nothing: each is recorded with its path and reason, and
//! the run either skips it (counted, listed at the end and in the run folder's `skipped.csv`)
//! or stops at the first one, as `--on-bad-image` says.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::DataError;
use super::decode::DecodeError;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum BadImagePolicy {
    /// Leave it out, count it, list it at the end and in skipped.csv.
    #[default]
    Skip,
    /// Stop at the first bad image with its path and reason.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadImage {
    pub path: PathBuf,
    pub reason: String,
}

impl From<&DecodeError> for BadImage {
    fn from(e: &DecodeError) -> Self {
        BadImage {
            path: e.path().to_path_buf(),
            reason: e.reason(),
        }
    }
}

/// The bad images met so far, shared by the pipeline's workers; each path once.
#[derive(Debug, Default)]
pub struct BadImageLog {
    entries: Mutex<Vec<BadImage>>,
}

impl BadImageLog {
    /// Records `e` under `policy`: Ok to skip it, Err to stop.
    pub fn record(&self, e: DecodeError, policy: BadImagePolicy) -> Result<(), DataError> {
        if policy == BadImagePolicy::Fail {
            return Err(DataError::BadImage(e));
        }
        let bad = BadImage::from(&e);
        let mut v = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if !v.iter().any(|b| b.path == bad.path) {
            v.push(bad);
        }
        Ok(())
    }

    pub fn entries(&self) -> Vec<BadImage> {
        let mut v = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// Writes `path,reason` rows (header included, even when empty).
    pub fn write_csv(&self, path: &Path) -> Result<(), DataError> {
        write_csv(path, &self.entries())
    }
}

pub fn write_csv(path: &Path, bad: &[BadImage]) -> Result<(), DataError> {
    let err = |e: csv::Error| DataError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record(["path", "reason"]).map_err(err)?;
    for b in bad {
        w.write_record([b.path.to_string_lossy().as_ref(), b.reason.as_str()])
            .map_err(err)?;
    }
    w.flush().map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
