//! VGG16's convolutions on the GPU that `--backend cuda` opened ([`crate::gpu`]), with the
//! same interface as [`super::host_convs`]: the inference forward of any range of layers, and
//! the trainable suffix's forward and backward for a training step. Tensors cross in burn's
//! NCHW layout on the host and are NHWC on the card.
//!
//! A device failure in the middle of a run (the card's memory exhausted by a large `--batch`,
//! a lost device) stops the process with cuDNN's or the driver's message, as burn's own GPU
//! backends do; checkpoints are written atomically, so no finished epoch is lost.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use super::architecture::{ConvLayer, pool_after};
use super::host_convs::{Activations, spread_over_pixels};
use super::layers::{tensor_from_vec, tensor2};
use super::prepared::PreparedKernels;
use crate::gpu::{Cuda, GpuError, GpuLayer};

fn fail(e: GpuError) -> ! {
    panic!("the GPU failed: {e}")
}

/// Each layer on the card, with whether a max-pool follows it.
fn on_card(
    gpu: &Cuda,
    convs: &[ConvLayer],
    first: usize,
    prepared: Option<&PreparedKernels>,
) -> Vec<(Arc<GpuLayer>, bool)> {
    convs
        .iter()
        .enumerate()
        .map(|(j, conv)| {
            let layer = match prepared {
                Some(p) => p.gpu(first + j, conv, gpu),
                None => upload(gpu, conv).map(Arc::new),
            };
            (layer.unwrap_or_else(|e| fail(e)), pool_after(first + j))
        })
        .collect()
}

/// A layer's kernel and bias, put on the card.
pub(super) fn upload(gpu: &Cuda, conv: &ConvLayer) -> Result<GpuLayer, GpuError> {
    let [cout, cin, _, _] = conv.weight.dims();
    gpu.upload_layer(
        &super::layers::values(&conv.weight),
        &super::layers::values(&conv.bias),
        cout,
        cin,
    )
}

/// Inference forward of `convs` (VGG16's layers `first..`), each with its ReLU and the
/// max-pool that closes its block, with the layers from (or added to) `prepared`.
pub fn forward(
    gpu: &Cuda,
    convs: &[ConvLayer],
    first: usize,
    x: Tensor<4>,
    prepared: &PreparedKernels,
) -> Tensor<4> {
    let device = x.device();
    let layers = on_card(gpu, convs, first, Some(prepared));
    let a = Activations::from_tensor(&x);
    let (data, dims) = gpu
        .forward(&layers, &a.data, a.dims)
        .unwrap_or_else(|e| fail(e));
    Activations { data, dims }.into_tensor(&device)
}

/// The trainable layers' forward pass, kept on the card for [`Tape::backward`].
pub struct Tape {
    inner: crate::gpu::Tape,
    /// The last layer's (pooled) output shape, NHWC.
    last: [usize; 4],
    /// Kernel shapes (cout, cin), in order.
    kernels: Vec<(usize, usize)>,
}

/// Forward of the trainable `convs` (layers `first..13`) from the frozen prefix's output,
/// ending in global average pooling: the features `[N, C]` and the tape for the backward pass.
/// The layers are uploaded for this step only: the step changes them.
pub fn forward_train(
    gpu: &Arc<Cuda>,
    convs: &[ConvLayer],
    first: usize,
    prefix: Tensor<4>,
) -> (Tensor<2>, Tape) {
    let device = prefix.device();
    let layers = on_card(gpu, convs, first, None);
    let a = Activations::from_tensor(&prefix);
    let (data, dims, inner) = gpu
        .forward_train(&layers, &a.data, a.dims)
        .unwrap_or_else(|e| fail(e));
    let last = Activations { data, dims };
    let feats = last.average_pixels();
    let kernels = convs
        .iter()
        .map(|c| {
            let [cout, cin, _, _] = c.weight.dims();
            (cout, cin)
        })
        .collect();
    let tape = Tape {
        inner,
        last: dims,
        kernels,
    };
    (tensor2(&feats, [dims[0], dims[3]], &device), tape)
}

impl Tape {
    /// Kernel (OIHW) and bias gradients of each trainable layer, in order, from the gradient
    /// of the features `[N, C]`.
    pub fn backward(self, dfeatures: &[f32], device: &Device) -> Vec<(Tensor<4>, Tensor<1>)> {
        let grad = spread_over_pixels(dfeatures, self.last);
        let grads = self.inner.backward(&grad).unwrap_or_else(|e| fail(e));
        grads
            .into_iter()
            .zip(self.kernels)
            .map(|((w, b), (cout, cin))| {
                (
                    tensor_from_vec(w, [cout, cin, 3, 3], device),
                    tensor_from_vec(b, [cout], device),
                )
            })
            .collect()
    }
}
