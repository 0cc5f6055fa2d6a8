//! faceattr: face attribute (gender) classification by fine-tuning VGG16, numerically faithful
//! to Keras and PyTorch on the same weights.
//!
//! - [`weights`]: importers for Keras HDF5, PyTorch `.pth` (zip and legacy) and safetensors,
//!   the registry of known weight files and their download.
//! - [`model`]: VGG16's base, the head, conventions, freezing by layer name, summaries.
//! - [`preprocess`] and [`data`]: decoding images and turning them into input tensors.
//! - [`train`]: Adam, the loss and the optimisation step.
//! - [`gpu`]: faceattr's own CUDA path (cuDNN through libraries loaded at run time).
//! - [`features`]: pooled base features for images (what `faceattr features` prints).

pub mod atomic_file;
pub mod cli;
pub mod data;
pub mod device;
pub mod eval;
pub mod faces;
pub mod features;
pub mod gpu;
pub mod kernels;
pub mod model;
pub mod panics;
pub mod preprocess;
pub mod progress;
pub mod report;
pub mod serve;
pub mod train;
pub mod weights;
