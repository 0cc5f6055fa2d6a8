//! Using a trained model: class probabilities for images, and test-set figures.

pub mod metrics;
pub mod predict;
