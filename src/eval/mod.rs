//! Using a trained model: class probabilities for images, and test-set figures.

pub mod card;
pub mod gradcam;
pub mod metrics;
pub mod predict;
pub mod report;
