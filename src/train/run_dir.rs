//! The run folder (where checkpoints, history and logs live) and the run's log.

use std::io::Write;
use std::path::PathBuf;

use super::error::{TrainError, io_err};
use super::history::EpochRecord;

/// Where everything of a run lives.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn args(&self) -> PathBuf {
        self.0.join("args.json")
    }
    pub fn last(&self) -> PathBuf {
        self.0.join("weights/last.safetensors")
    }
    pub fn best(&self) -> PathBuf {
        self.0.join("weights/best.safetensors")
    }
    pub fn history(&self) -> PathBuf {
        self.0.join("history.csv")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("train.log")
    }
}

/// Lines for the terminal and `train.log`.
pub(crate) struct Log {
    file: std::fs::File,
    quiet: bool,
}

impl Log {
    /// Appends to the run's `train.log`.
    pub(crate) fn open(run: &RunDir, quiet: bool) -> Result<Self, TrainError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run.log())
            .map_err(io_err(&run.log()))?;
        Ok(Log { file, quiet })
    }

    /// An epoch's line: training and validation loss and accuracy, speed, time.
    pub(crate) fn epoch(&mut self, r: &EpochRecord, epochs: usize) {
        self.line(&format!(
            "epoch {:>3}/{epochs}: loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} | {:.1} img/s, {:.1} s{}",
            r.epoch,
            r.train_loss,
            r.train_acc,
            r.val_loss,
            r.val_acc,
            r.images_per_s,
            r.elapsed_s,
            if r.cached { " (cached features)" } else { "" }
        ));
    }

    pub(crate) fn line(&mut self, s: &str) {
        if !self.quiet {
            println!("{s}");
        }
        let _ = writeln!(self.file, "{s}");
    }
}
