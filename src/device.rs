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
    /// NVIDIA GPU: VGG16's layers on cuDNN, the head on the CPU (needs the NVIDIA driver and
    /// cuDNN 9 at run time, e.g. `pip install nvidia-cudnn-cu12`).
    Cuda,
    /// Any GPU through wgpu (build with `--features wgpu`).
    Wgpu,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendUnavailable {
    #[error(
        "backend '{0:?}' is not compiled into this faceattr; rebuild with `cargo build --release --features {1}`"
    )]
    NotCompiled(Backend, &'static str),
    /// Compiled in, but no device could be started (no GPU, no driver, a failing adapter).
    #[error(
        "backend '{backend:?}' could not start a device: {reason}.{hint} Or run on the CPU with `--backend flex`."
    )]
    NoDevice {
        backend: Backend,
        reason: String,
        hint: &'static str,
    },
}

impl Backend {
    pub fn device(self) -> Result<Device, BackendUnavailable> {
        match self {
            Backend::Flex => Ok(Device::flex()),
            // Deprecated by burn; kept only so the two CPU backends can be measured side by side.
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            Backend::Ndarray => Ok(Device::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Backend::Ndarray => Err(BackendUnavailable::NotCompiled(self, "ndarray")),
            #[cfg(feature = "cuda")]
            Backend::Cuda => {
                let gpu = match crate::gpu::active() {
                    Some(gpu) => gpu,
                    None => crate::gpu::open(0, Default::default()).map_err(|e| {
                        BackendUnavailable::NoDevice {
                            backend: self,
                            reason: e.to_string(),
                            hint: "",
                        }
                    })?,
                };
                crate::gpu::activate(Some(gpu));
                // the head and everything but the convolutions stay on burn-flex
                Ok(Device::flex())
            }
            #[cfg(not(feature = "cuda"))]
            Backend::Cuda => Err(BackendUnavailable::NotCompiled(self, "cuda")),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => probed(
                self,
                || Device::wgpu(burn::tensor::DeviceKind::default()),
                " Check that a GPU with a Vulkan driver is present (Debian: libvulkan1 and the vendor's driver, e.g. mesa-vulkan-drivers or NVIDIA's).",
            ),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => Err(BackendUnavailable::NotCompiled(self, "wgpu")),
        }
    }
}

/// A GPU device, started and checked with one small operation read back: burn's GPU
/// runtimes start lazily and panic from inside when no adapter or driver can be had, so the
/// first use happens here, where that panic becomes a clear error.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
fn probed(
    backend: Backend,
    make: impl FnOnce() -> Device,
    hint: &'static str,
) -> Result<Device, BackendUnavailable> {
    use burn::tensor::{Tensor, TensorData};
    let result = crate::panics::contained(|| {
        let device = make();
        let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
        let sum = crate::model::layers::values(&t.sum());
        (device, sum)
    });
    match result {
        Ok((device, sum)) if sum == [3.0] => Ok(device),
        Ok((_, sum)) => Err(BackendUnavailable::NoDevice {
            backend,
            reason: format!("a test sum gave {sum:?} instead of [3.0]"),
            hint,
        }),
        Err(reason) => Err(BackendUnavailable::NoDevice {
            backend,
            reason,
            hint,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_that_panics_on_first_use_is_a_clear_error() {
        // what cubecl does when no adapter can be had
        let err = probed(
            Backend::Wgpu,
            || panic!("Unable to acquire wgpu device: AdapterUnavailable"),
            " Check the driver.",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("backend 'Wgpu' could not start a device"),
            "{err}"
        );
        assert!(err.contains("AdapterUnavailable"), "{err}");
        assert!(err.contains("--backend flex"), "{err}");
        assert!(probed(Backend::Flex, Device::flex, "").is_ok());
    }
}
