//! Training: the optimiser, the loss, one optimisation step over the trainable suffix, the
//! frozen-feature cache, one epoch (`epoch`), and the run (`trainer`) with its checkpoints,
//! run folder (`run_dir`) and errors (`error`).

pub mod adam;
pub mod cache;
pub mod config;
pub mod epoch;
pub mod error;
pub mod history;
pub mod interrupt;
pub mod loss;
pub mod run_dir;
pub mod run_lock;
pub mod step;
pub mod trainer;

pub use adam::Adam;
pub use step::{StepOutput, train_step, train_step_from_prefix};
