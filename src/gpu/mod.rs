//! faceattr's own CUDA path: VGG16's convolutions, ReLUs and max-pools on cuDNN, through
//! cudarc's bindings loaded at run time (no CUDA toolkit and no network to build; a binary
//! without a GPU runs on the CPU as before). The head, BatchNorm and Adam stay on the host,
//! where burn-flex runs them; tensors cross in NCHW and are NHWC on the card.
//!
//! - [`libraries`]: where libcuda and libcudnn are (pure file lookups, tested without a GPU).
//! - `cuda`: the device, its stream and cuDNN handle, opened once ([`open`], [`active`]).
//! - `cudnn`: the cuDNN calls, as functions returning [`GpuError`].
//! - `vgg`: the layers' forward and backward on device buffers.

pub mod libraries;

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
mod cudnn;
#[cfg(feature = "cuda")]
mod vgg;

#[cfg(feature = "cuda")]
pub use cuda::{Cuda, activate, active, open};
#[cfg(feature = "cuda")]
pub use vgg::{GpuLayer, Tape};

/// Which arithmetic the GPU's convolutions may use.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE float32 multiply-adds only (cuDNN's FMA math): the CPU path's numbers.
    #[default]
    Fp32,
    /// float32 tensors, products on tensor cores in TF32 (10-bit mantissa), sums in float32.
    Tf32,
}

/// Sets the math of the GPU `--backend cuda` opened, and says which GPU that is (its
/// description, for reports); `None`, and nothing to set, on the CPU.
pub fn use_precision(precision: Precision) -> Option<String> {
    #[cfg(feature = "cuda")]
    {
        let gpu = active()?;
        gpu.set_precision(precision);
        Some(format!("{gpu:?}"))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = precision;
        None
    }
}

/// What went wrong on the CUDA path.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Missing(#[from] libraries::Missing),
    #[error("{library} was found at {path} but does not load: {reason}")]
    NotLoadable {
        library: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "{library} loads from {path} but not by name; put its folder on the loader's path \
         (`export LD_LIBRARY_PATH={folder}:$LD_LIBRARY_PATH`) and run again"
    )]
    NotOnLoaderPath {
        library: &'static str,
        path: String,
        folder: String,
    },
    #[error("the CUDA driver failed in {call}: {reason}")]
    Driver { call: &'static str, reason: String },
    #[error("cuDNN failed in {call}: {status}")]
    Cudnn { call: &'static str, status: String },
    #[cfg(feature = "cuda")]
    #[error(
        "cuDNN offers no deterministic algorithm for the convolution's {0:?} pass at these shapes"
    )]
    NoAlgorithm(cudnn::Pass),
    #[error("a tensor dimension of {0} is too large for cuDNN")]
    TooLarge(usize),
}
