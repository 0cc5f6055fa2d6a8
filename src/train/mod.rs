//! Training: the optimiser, the loss, one optimisation step over the trainable suffix, the
//! frozen-feature cache and the run loop with its checkpoints and run folder.

pub mod adam;
pub mod cache;
pub mod config;
pub mod history;
pub mod interrupt;
pub mod loss;
pub mod run_lock;
pub mod step;
pub mod trainer;

pub use adam::Adam;
pub use step::{StepOutput, train_step, train_step_from_prefix};
