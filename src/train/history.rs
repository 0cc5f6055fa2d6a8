//! Per-epoch figures, kept in the checkpoint and written as `history.csv`.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_acc: f64,
    /// Training images per second over the epoch's training pass.
    pub images_per_s: f64,
    /// Wall time of the epoch (training and validation), seconds.
    pub elapsed_s: f64,
    /// Time the training pass waited for decoded batches, seconds.
    pub data_wait_s: f64,
    pub cached: bool,
}

pub fn write_csv(path: &Path, history: &[EpochRecord]) -> std::io::Result<()> {
    let mut out = String::from(
        "epoch,train_loss,train_acc,val_loss,val_acc,images_per_s,elapsed_s,data_wait_s,cached\n",
    );
    for r in history {
        out.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.3},{:.3},{:.3},{}\n",
            r.epoch,
            r.train_loss,
            r.train_acc,
            r.val_loss,
            r.val_acc,
            r.images_per_s,
            r.elapsed_s,
            r.data_wait_s,
            r.cached
        ));
    }
    crate::atomic_file::write(path, out.as_bytes())
}
