//! VGG16's convolutions on faceattr's own CPU kernels ([`crate::kernels`]) instead of
//! burn's: the inference forward of any range of layers, and the trainable suffix's forward
//! and backward for a training step. Used on the burn-flex device (the CPU) unless turned off
//! with [`crate::kernels::set_enabled`]; GPU devices keep burn's convolution and autodiff.
//!
//! Tensors cross the boundary in burn's NCHW layout and are NHWC inside.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::tensor::{Device, Tensor};

use super::architecture::{ConvLayer, conv_shapes, pool_after};
use super::layers::{tensor_from_vec, tensor2, tensor4, values};
use crate::kernels::conv3x3::{self, ConvShape};
use crate::kernels::{layout, pool};

/// Whether tensors on `device` run through the host kernels.
pub fn applies(device: &Device) -> bool {
    crate::kernels::enabled() && !device.is_autodiff() && *device == Device::flex()
}

/// NHWC activations of a batch and their shape.
struct Activations {
    data: Vec<f32>,
    /// n, h, w, c
    dims: [usize; 4],
}

impl Activations {
    fn from_tensor(x: &Tensor<4>) -> Self {
        let [n, c, h, w] = x.dims();
        Activations {
            data: layout::nchw_to_nhwc(&values(x), [n, c, h, w]),
            dims: [n, h, w, c],
        }
    }

    fn into_tensor(self, device: &Device) -> Tensor<4> {
        let [n, h, w, c] = self.dims;
        tensor4(
            &layout::nhwc_to_nchw(&self.data, self.dims),
            [n, c, h, w],
            device,
        )
    }

    fn shape_into(&self, cout: usize) -> ConvShape {
        let [n, h, w, cin] = self.dims;
        ConvShape { n, h, w, cin, cout }
    }
}

/// `relu(conv(a) + bias)` with a kernel prepared for `a`'s shape.
fn conv_forward(
    a: &Activations,
    kernel: &conv3x3::Prepared,
    cout: usize,
    bias: &[f32],
) -> Activations {
    let s = a.shape_into(cout);
    Activations {
        data: kernel.forward(&a.data, s, Some(bias), true),
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

/// Each layer's kernel prepared for the host kernels (with its bias), by layer and input size,
/// kept between forward passes: preparing VGG16's 13 kernels takes about 40 ms on 2 cores, the
/// same for every batch while the weights stay the same. Whoever changes a layer's tensors
/// calls [`PreparedKernels::forget`] (the optimisation step does); a copy of the model starts
/// with an empty store, since the copy's weights may change on their own.
#[derive(Default)]
pub struct PreparedKernels(Mutex<HashMap<LayerAt, Arc<PreparedLayer>>>);

/// A layer index and the input height and width it was prepared for.
type LayerAt = (usize, usize, usize);

/// A prepared kernel and the layer's bias.
pub struct PreparedLayer {
    kernel: conv3x3::Prepared,
    bias: Vec<f32>,
}

impl PreparedKernels {
    /// The store, locked. A poisoned lock only means another thread panicked while inserting:
    /// the map still holds complete entries.
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<LayerAt, Arc<PreparedLayer>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Layer `index`'s kernel prepared for inputs of shape `s`, from the store or made now.
    fn get(&self, index: usize, conv: &ConvLayer, s: ConvShape) -> Arc<PreparedLayer> {
        let key = (index, s.h, s.w);
        if let Some(found) = self.map().get(&key).cloned() {
            return found;
        }
        let made = Arc::new(PreparedLayer {
            kernel: conv3x3::Prepared::new(&values(&conv.weight), s),
            bias: values(&conv.bias),
        });
        self.map().insert(key, made.clone());
        made
    }

    /// Drops what was prepared from layer `index`'s old tensors.
    pub fn forget(&self, index: usize) {
        self.map().retain(|&(layer, _, _), _| layer != index);
    }
}

impl Clone for PreparedKernels {
    fn clone(&self) -> Self {
        PreparedKernels::default()
    }
}

impl std::fmt::Debug for PreparedKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedKernels({} prepared)", self.map().len())
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
        .map(|(j, (conv, &s))| prepared.get(first + j, conv, s))
        .collect();
    let per_chunk = (CHUNK_FLOATS / widest).clamp(1, n.max(1));
    let mut outs = Vec::new();
    for start in (0..n).step_by(per_chunk) {
        let part = x.clone().narrow(0, start, per_chunk.min(n - start));
        let mut a = Activations::from_tensor(&part);
        for (j, layer) in layers.iter().enumerate() {
            a = conv_forward(&a, &layer.kernel, widths[j], &layer.bias);
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
pub fn forward_train(convs: &[ConvLayer], first: usize, prefix: Tensor<4>) -> (Tensor<2>, Tape) {
    let device = prefix.device();
    let mut a = Activations::from_tensor(&prefix);
    let mut layers = Vec::with_capacity(convs.len());
    for (j, conv) in convs.iter().enumerate() {
        let cout = conv.out_channels();
        let weight = values(&conv.weight);
        let kernel = conv3x3::Prepared::new(&weight, a.shape_into(cout));
        let output = conv_forward(&a, &kernel, cout, &values(&conv.bias));
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
    let [n, h, w, c] = a.dims;
    let mut feats = vec![0.0f32; n * c];
    for (img, f) in feats.chunks_exact_mut(c).enumerate() {
        for px in a.data[img * h * w * c..(img + 1) * h * w * c].chunks_exact(c) {
            f.iter_mut().zip(px).for_each(|(f, v)| *f += v);
        }
        f.iter_mut().for_each(|f| *f /= (h * w) as f32);
    }
    (tensor2(&feats, [n, c], &device), Tape { layers, last: a })
}

impl Tape {
    /// Kernel (OIHW) and bias gradients of each trainable layer, in order, from the
    /// gradient of the features `[N, C]`.
    pub fn backward(self, dfeatures: &[f32], device: &Device) -> Vec<(Tensor<4>, Tensor<1>)> {
        let [n, h, w, c] = self.last.dims;
        let scale = 1.0 / (h * w) as f32;
        let mut grad = vec![0.0f32; n * h * w * c];
        for (img, g) in grad.chunks_exact_mut(h * w * c).enumerate() {
            let df = &dfeatures[img * c..(img + 1) * c];
            for px in g.chunks_exact_mut(c) {
                px.iter_mut().zip(df).for_each(|(g, d)| *g = d * scale);
            }
        }
        let mut out = Vec::with_capacity(self.layers.len());
        for (j, saved) in self.layers.iter().enumerate().rev() {
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
            out.push((
                tensor_from_vec(
                    layout::unpack_kernel(&g.kernel, s.cout, s.cin),
                    [s.cout, s.cin, 3, 3],
                    device,
                ),
                tensor_from_vec(g.bias, [s.cout], device),
            ));
            if let Some(gx) = g.input {
                grad = gx;
            }
        }
        out.reverse();
        out
    }
}
