//! VGG16's convolutions on faceattr's own CPU kernels ([`crate::kernels`]) instead of
//! burn's: the inference forward of any range of layers, and the trainable suffix's forward
//! and backward for a training step. Used on the burn-flex device (the CPU) unless turned off
//! with [`crate::kernels::set_enabled`] or a GPU is active ([`super::engine`]).
//!
//! Tensors cross the boundary in burn's NCHW layout and are NHWC inside.

use burn::tensor::{Device, Tensor};

use super::architecture::{ConvLayer, conv_shapes, pool_after};
use super::grads::{KernelGrad, LayerGrads, TransformedGrad};
use super::layers::{tensor_from_vec, tensor2, values, with_values};
use super::prepared::PreparedKernels;
use crate::kernels::conv3x3::{self, ConvShape};
use crate::kernels::{layout, pool};

/// NHWC activations of a batch and their shape.
pub(super) struct Activations {
    pub data: Vec<f32>,
    /// n, h, w, c
    pub dims: [usize; 4],
}

impl Activations {
    pub fn from_tensor(x: &Tensor<4>) -> Self {
        let [n, c, h, w] = x.dims();
        Activations {
            data: with_values(x, |v| layout::nchw_to_nhwc(v, [n, c, h, w])),
            dims: [n, h, w, c],
        }
    }

    pub fn into_tensor(self, device: &Device) -> Tensor<4> {
        let [n, h, w, c] = self.dims;
        tensor_from_vec(
            layout::nhwc_to_nchw(&self.data, self.dims),
            [n, c, h, w],
            device,
        )
    }

    /// Global average pooling: the mean over pixels of each image's channels, `[n, c]`.
    pub fn average_pixels(&self) -> Vec<f32> {
        let [n, h, w, c] = self.dims;
        let mut feats = vec![0.0f32; n * c];
        for (img, f) in feats.chunks_exact_mut(c).enumerate() {
            for px in self.data[img * h * w * c..(img + 1) * h * w * c].chunks_exact(c) {
                f.iter_mut().zip(px).for_each(|(f, v)| *f += v);
            }
            f.iter_mut().for_each(|f| *f /= (h * w) as f32);
        }
        feats
    }

    fn shape_into(&self, cout: usize) -> ConvShape {
        let [n, h, w, cin] = self.dims;
        ConvShape { n, h, w, cin, cout }
    }
}

/// `relu(conv(a) + bias)`, where `conv(x, s)` runs a kernel prepared for `a`'s shape.
fn conv_forward(
    a: &Activations,
    cout: usize,
    conv: impl FnOnce(&[f32], ConvShape) -> Vec<f32>,
) -> Activations {
    let s = a.shape_into(cout);
    Activations {
        data: conv(&a.data, s),
        dims: [s.n, s.h, s.w, s.cout],
    }
}

fn pool_forward(a: &Activations) -> Activations {
    let [n, h, w, c] = a.dims;
    Activations {
        data: pool::max_pool2(&a.data, a.dims),
        dims: [n, h / 2, w / 2, c],
    }
}

/// Largest activation kept at once by the inference forward, in floats (128 MiB): a larger
/// batch is run a part at a time, so peak memory stops growing with the batch. (At 218x178
/// a batch of 12 is one part; smaller parts leave too few Winograd jobs to keep 2 threads busy.)
const CHUNK_FLOATS: usize = 32 << 20;

/// Inference forward of `convs` (VGG16's layers `first..`), each with its ReLU and the
/// max-pool that closes its block, with kernels from (or added to) `prepared`.
pub fn forward(
    convs: &[ConvLayer],
    first: usize,
    x: Tensor<4>,
    prepared: &PreparedKernels,
) -> Tensor<4> {
    let device = x.device();
    let [n, c, h, w] = x.dims();
    // each layer's kernel, prepared once for its input size, and the largest activation
    let widths: Vec<usize> = convs.iter().map(ConvLayer::out_channels).collect();
    let shapes = conv_shapes(1, (h, w), c, first, &widths);
    let widest = shapes.iter().map(|s| s.h * s.w * s.cout).max().unwrap_or(1);
    let layers: Vec<_> = convs
        .iter()
        .zip(&shapes)
        .enumerate()
        .map(|(j, (conv, &s))| prepared.host(first + j, conv, s))
        .collect();
    let per_chunk = (CHUNK_FLOATS / widest).clamp(1, n.max(1));
    let mut outs = Vec::new();
    for start in (0..n).step_by(per_chunk) {
        let part = x.clone().narrow(0, start, per_chunk.min(n - start));
        let mut a = Activations::from_tensor(&part);
        for (j, layer) in layers.iter().enumerate() {
            a = conv_forward(&a, widths[j], |x, s| {
                layer.kernel.forward(x, s, Some(&layer.bias), true)
            });
            if pool_after(first + j) {
                a = pool_forward(&a);
            }
        }
        outs.push(a.into_tensor(&device));
    }
    if outs.len() == 1 {
        outs.pop().unwrap_or(x)
    } else {
        Tensor::cat(outs, 0)
    }
}

/// The gradient of NHWC activations of shape `dims` from that of their pixel averages
/// (`[n, c]`): each pixel gets its image's channel gradient over the pixel count.
pub(super) fn spread_over_pixels(dfeatures: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let [n, h, w, c] = dims;
    let scale = 1.0 / (h * w) as f32;
    let mut grad = vec![0.0f32; n * h * w * c];
    for (img, g) in grad.chunks_exact_mut(h * w * c).enumerate() {
        let df = &dfeatures[img * c..(img + 1) * c];
        for px in g.chunks_exact_mut(c) {
            px.iter_mut().zip(df).for_each(|(g, d)| *g = d * scale);
        }
    }
    grad
}

/// What the backward pass needs from the forward pass of one layer.
struct Saved {
    input: Activations,
    /// The layer's kernel as the forward used it, for the input gradient.
    kernel: conv3x3::Prepared,
    /// The output (after ReLU) where a max-pool follows; otherwise the output is the next
    /// layer's input and is kept only there.
    pre_pool: Option<Activations>,
}

/// The trainable layers' forward pass, kept for [`Tape::backward`].
pub struct Tape {
    layers: Vec<Saved>,
    /// The last layer's (pooled) output, which the features average.
    last: Activations,
}

/// Forward of the trainable `convs` (layers `first..13`) from the frozen prefix's output,
/// ending in global average pooling: returns the features `[N, C]` (on `prefix`'s device)
/// and the tape for the backward pass.
pub fn forward_train(
    convs: &[ConvLayer],
    first: usize,
    prefix: Tensor<4>,
    prepared: &PreparedKernels,
) -> (Tensor<2>, Tape) {
    let device = prefix.device();
    let mut a = Activations::from_tensor(&prefix);
    let mut layers = Vec::with_capacity(convs.len());
    for (j, conv) in convs.iter().enumerate() {
        let cout = conv.out_channels();
        let kernel = prepared.take_training(first + j, conv, a.shape_into(cout));
        let bias = values(&conv.bias);
        let output = conv_forward(&a, cout, |x, s| kernel.forward(x, s, Some(&bias), true));
        let (next, pre_pool) = if pool_after(first + j) {
            (pool_forward(&output), Some(output))
        } else {
            (output, None)
        };
        layers.push(Saved {
            input: a,
            kernel,
            pre_pool,
        });
        a = next;
    }
    let feats = a.average_pixels();
    (
        tensor2(&feats, [a.dims[0], a.dims[3]], &device),
        Tape { layers, last: a },
    )
}

impl Tape {
    /// Kernel and bias gradients of each trainable layer, in order, from the gradient of the
    /// features `[N, C]`.
    pub fn backward(mut self, dfeatures: &[f32], device: &Device) -> Vec<LayerGrads> {
        let mut grad = spread_over_pixels(dfeatures, self.last.dims);
        let mut out = Vec::with_capacity(self.layers.len());
        for j in (0..self.layers.len()).rev() {
            let saved = &self.layers[j];
            let output = match &saved.pre_pool {
                Some(o) => {
                    grad = pool::max_pool2_backward(&o.data, &grad, o.dims);
                    o
                }
                None => self
                    .layers
                    .get(j + 1)
                    .map_or(&self.last, |next| &next.input),
            };
            let s = saved.input.shape_into(output.dims[3]);
            // the first trainable layer's input gradient is not needed
            let g = conv3x3::backward(
                &saved.input.data,
                &output.data,
                &grad,
                s,
                (j > 0).then_some(&saved.kernel),
            );
            let used = std::mem::replace(
                &mut self.layers[j].kernel,
                conv3x3::Prepared::Im2col(Vec::new()),
            );
            let kernel = match (g.kernel, used) {
                (conv3x3::KernelGrad::Transformed(du), conv3x3::Prepared::Winograd(u)) => {
                    KernelGrad::Transformed(TransformedGrad::new(du, u, s.cout, s.cin))
                }
                (g, _) => KernelGrad::Tensor(tensor_from_vec(
                    g.to_oihw(s.cout, s.cin),
                    [s.cout, s.cin, 3, 3],
                    device,
                )),
            };
            out.push(LayerGrads {
                kernel,
                bias: tensor_from_vec(g.bias, [s.cout], device),
            });
            if let Some(gx) = g.input {
                grad = gx;
            }
        }
        out.reverse();
        out
    }
}
