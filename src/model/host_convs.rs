//! VGG16's convolutions on faceattr's own CPU kernels ([`crate::kernels`]) instead of
//! burn's: the inference forward of any range of layers, and the trainable suffix's forward
//! and backward for a training step. Used on the burn-flex device (the CPU) unless turned off
//! with [`crate::kernels::set_enabled`]; GPU devices keep burn's convolution and autodiff.
//!
//! Tensors cross the boundary in burn's NCHW layout and are NHWC inside.

use burn::tensor::{Device, Tensor};

use super::layers::{tensor1, tensor2, tensor4, values};
use super::vgg16::{ConvLayer, pool_after};
use crate::kernels::conv3x3::{self, ConvShape};
use crate::kernels::{layout, pool};

/// Whether `x` (and the layers it goes through) runs on the host kernels.
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

fn conv_forward(a: &Activations, out_channels: usize, weight: &[f32], bias: &[f32]) -> Activations {
    let s = a.shape_into(out_channels);
    let kernel = conv3x3::Prepared::new(weight, s);
    let data = kernel.forward(&a.data, s, Some(bias), true);
    Activations {
        data,
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
/// max-pool that closes its block.
pub fn forward(convs: &[ConvLayer], first: usize, x: Tensor<4>) -> Tensor<4> {
    let device = x.device();
    let [n, _, h, w] = x.dims();
    // each layer's kernel, prepared once for its input size, and the largest activation
    let (mut lh, mut lw, mut cin) = (h, w, x.dims()[1]);
    let mut widest = 1;
    let mut layers = Vec::with_capacity(convs.len());
    for (j, conv) in convs.iter().enumerate() {
        let s = ConvShape {
            n: 1,
            h: lh,
            w: lw,
            cin,
            cout: conv.out_channels(),
        };
        widest = widest.max(lh * lw * s.cout);
        layers.push((
            conv3x3::Prepared::new(&values(&conv.weight), s),
            values(&conv.bias),
        ));
        cin = s.cout;
        if pool_after(first + j) {
            (lh, lw) = (lh / 2, lw / 2);
        }
    }
    let per_chunk = (CHUNK_FLOATS / widest).clamp(1, n.max(1));
    let mut outs = Vec::new();
    for start in (0..n).step_by(per_chunk) {
        let part = x.clone().narrow(0, start, per_chunk.min(n - start));
        let mut a = Activations::from_tensor(&part);
        for (j, (kernel, bias)) in layers.iter().enumerate() {
            let s = a.shape_into(convs[j].out_channels());
            a = Activations {
                data: kernel.forward(&a.data, s, Some(bias), true),
                dims: [s.n, s.h, s.w, s.cout],
            };
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
    /// After ReLU, before the pool.
    output: Activations,
    pooled: bool,
}

/// The trainable layers' forward pass, kept for [`Tape::backward`].
pub struct Tape {
    layers: Vec<Saved>,
    /// Shape of the last layer's (pooled) output, which the features average.
    last: [usize; 4],
}

/// Forward of the trainable `convs` (layers `first..13`) from the frozen prefix's output,
/// ending in global average pooling: returns the features `[N, C]` (on `prefix`'s device)
/// and the tape for the backward pass.
pub fn forward_train(convs: &[ConvLayer], first: usize, prefix: Tensor<4>) -> (Tensor<2>, Tape) {
    let device = prefix.device();
    let mut a = Activations::from_tensor(&prefix);
    let mut layers = Vec::with_capacity(convs.len());
    for (j, conv) in convs.iter().enumerate() {
        let output = conv_forward(
            &a,
            conv.out_channels(),
            &values(&conv.weight),
            &values(&conv.bias),
        );
        let pooled = pool_after(first + j);
        let next = if pooled {
            pool_forward(&output)
        } else {
            Activations {
                data: output.data.clone(),
                dims: output.dims,
            }
        };
        layers.push(Saved {
            input: a,
            output,
            pooled,
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
    (
        tensor2(&feats, [n, c], &device),
        Tape {
            layers,
            last: a.dims,
        },
    )
}

impl Tape {
    /// Kernel (OIHW) and bias gradients of each trainable layer, in order, from the
    /// gradient of the features `[N, C]`.
    pub fn backward(
        self,
        convs: &[ConvLayer],
        dfeatures: &[f32],
        device: &Device,
    ) -> Vec<(Tensor<4>, Tensor<1>)> {
        let [n, h, w, c] = self.last;
        let scale = 1.0 / (h * w) as f32;
        let mut grad = vec![0.0f32; n * h * w * c];
        for (img, g) in grad.chunks_exact_mut(h * w * c).enumerate() {
            let df = &dfeatures[img * c..(img + 1) * c];
            for px in g.chunks_exact_mut(c) {
                px.iter_mut().zip(df).for_each(|(g, d)| *g = d * scale);
            }
        }
        let mut out = Vec::with_capacity(convs.len());
        for (j, (saved, conv)) in self.layers.iter().zip(convs).enumerate().rev() {
            if saved.pooled {
                grad = pool::max_pool2_backward(&saved.output.data, &grad, saved.output.dims);
            }
            let s = saved.input.shape_into(conv.out_channels());
            let weight = values(&conv.weight);
            let flipped = (j > 0).then(|| layout::pack_kernel_flipped(&weight, s.cout, s.cin));
            let g = conv3x3::backward(
                &saved.input.data,
                &saved.output.data,
                &grad,
                s,
                flipped.as_deref(),
            );
            out.push((
                tensor4(
                    &layout::unpack_kernel(&g.kernel, s.cout, s.cin),
                    [s.cout, s.cin, 3, 3],
                    device,
                ),
                tensor1(&g.bias, device),
            ));
            if let Some(gx) = g.input {
                grad = gx;
            }
        }
        out.reverse();
        out
    }
}
