//! Which burn backend runs the tensors, chosen at run time from those compiled in.

use burn::tensor::Device;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn-flex: pure-Rust CPU backend (gemm-based convolutions, rayon threads). Default.
    #[default]
    Flex,
    /// burn-ndarray: deprecated loop-based CPU backend (build with `--features ndarray`).
    Ndarray,
    /// NVIDIA GPU through CUDA (build with `--features cuda`; needs the driver at run time).
    Cuda,
    /// Any GPU through wgpu (build with `--features wgpu`).
    Wgpu,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "backend '{0:?}' is not compiled into this faceattr; rebuild with `cargo build --release --features {1}`"
)]
pub struct BackendUnavailable(pub Backend, pub &'static str);

impl Backend {
    pub fn device(self) -> Result<Device, BackendUnavailable> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            // Deprecated by burn; kept only so the two CPU backends can be measured side by side.
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Backend::Ndarray => Err(BackendUnavailable(self, "ndarray")),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0usize)),
            #[cfg(not(feature = "cuda"))]
            Backend::Cuda => Err(BackendUnavailable(self, "cuda")),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::default())),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => Err(BackendUnavailable(self, "wgpu")),
        }
    }
}
