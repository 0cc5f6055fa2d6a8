//! Which code runs VGG16's convolutions for a device: faceattr's CPU kernels
//! ([`super::host_convs`]) on burn-flex, cuDNN ([`super::gpu_convs`]) when `--backend cuda`
//! opened a GPU, or burn's own convolution and autodiff (other backends, autodiff tensors, or
//! the host kernels turned off to measure burn's).

use std::ops::Range;

use burn::tensor::{Device, Tensor};

use super::architecture::{ConvLayer, pool_after};
#[cfg(feature = "cuda")]
use super::grads::KernelGrad;
use super::grads::LayerGrads;
use super::host_convs;
use super::layers::{conv3x3_relu, max_pool2};
use super::prepared::PreparedKernels;

/// The engine for tensors on a device.
#[derive(Debug, Clone)]
pub enum Engine {
    /// burn's convolution (and autodiff, for training).
    Burn,
    /// faceattr's CPU kernels.
    Host,
    /// cuDNN on the GPU `--backend cuda` opened.
    #[cfg(feature = "cuda")]
    Cuda(std::sync::Arc<crate::gpu::Cuda>),
}

impl Engine {
    pub fn for_device(device: &Device) -> Engine {
        if device.is_autodiff() || *device != Device::flex() {
            return Engine::Burn;
        }
        #[cfg(feature = "cuda")]
        if let Some(gpu) = crate::gpu::active() {
            return Engine::Cuda(gpu);
        }
        if crate::kernels::enabled() {
            Engine::Host
        } else {
            Engine::Burn
        }
    }

    /// Inference forward of `convs`' layers `range`, each with its ReLU and the max-pool that
    /// closes its block.
    pub fn forward(
        &self,
        convs: &[ConvLayer],
        range: Range<usize>,
        mut x: Tensor<4>,
        prepared: &PreparedKernels,
    ) -> Tensor<4> {
        let first = range.start;
        match self {
            _ if range.is_empty() => x,
            Engine::Host => host_convs::forward(&convs[range], first, x, prepared),
            #[cfg(feature = "cuda")]
            Engine::Cuda(gpu) => super::gpu_convs::forward(gpu, &convs[range], first, x, prepared),
            Engine::Burn => {
                for i in range {
                    x = conv3x3_relu(x, &convs[i].weight, &convs[i].bias);
                    if pool_after(i) {
                        x = max_pool2(x);
                    }
                }
                x
            }
        }
    }

    /// Training forward of the trainable `convs` (layers `first..13`) from the frozen
    /// prefix's output: the features `[N, C]` and the tape for the backward pass, or `None`
    /// for [`Engine::Burn`]. The host kernels take their kernels from `prepared` (see
    /// [`PreparedKernels::take_training`]).
    pub fn forward_train(
        &self,
        convs: &[ConvLayer],
        first: usize,
        prefix: Tensor<4>,
        prepared: &PreparedKernels,
    ) -> Option<(Tensor<2>, Tape)> {
        match self {
            Engine::Burn => None,
            Engine::Host => {
                let (f, t) = host_convs::forward_train(convs, first, prefix, prepared);
                Some((f, Tape::Host(t)))
            }
            #[cfg(feature = "cuda")]
            Engine::Cuda(gpu) => {
                let (f, t) = super::gpu_convs::forward_train(gpu, convs, first, prefix);
                Some((f, Tape::Cuda(t)))
            }
        }
    }
}

/// A training forward's record, on the engine that ran it.
pub enum Tape {
    Host(host_convs::Tape),
    #[cfg(feature = "cuda")]
    Cuda(super::gpu_convs::Tape),
}

impl Tape {
    /// Kernel and bias gradients of each trainable layer, in order, from the gradient of the
    /// features `[N, C]`.
    pub fn backward(self, dfeatures: &[f32], device: &Device) -> Vec<LayerGrads> {
        match self {
            Tape::Host(t) => t.backward(dfeatures, device),
            #[cfg(feature = "cuda")]
            Tape::Cuda(t) => t
                .backward(dfeatures, device)
                .into_iter()
                .map(|(w, bias)| LayerGrads {
                    kernel: KernelGrad::Tensor(w),
                    bias,
                })
                .collect(),
        }
    }
}
