//! Training: the optimiser, the loss and one optimisation step over the trainable suffix.

pub mod adam;
pub mod loss;
pub mod step;

pub use adam::Adam;
pub use step::{StepOutput, train_step, train_step_from_prefix};
