//! 3x3 'same' convolution (stride 1, zero padding 1) on NHWC as a matrix product: the
//! 3x3xC neighbourhoods of a block of output pixels are copied into rows of a patch matrix
//! (im2col), which one `gemm` call multiplies by the packed kernel `[9 * in, out]`; bias and
//! ReLU are applied while the block is still in cache. Blocks run on all threads, each with
//! a serial product, so every output element is summed in the same order on every run.

use rayon::prelude::*;

use super::gemm::{MatRef, Threads, matmul};
pub use super::shape::ConvShape;
use super::shape::bias_relu;

/// Output pixels per block: about 2 MB of patch matrix, at least 128 rows so the kernel's
/// packing is shared by enough of them.
fn block_rows(depth: usize) -> usize {
    ((1usize << 19) / depth.max(1)).clamp(128, 2048)
}

/// Copies the neighbourhoods of output pixels `first..first + rows` into `patch`
/// (`rows x 9 * cin`, zero outside the image).
fn im2col(x: &[f32], s: ConvShape, first: usize, rows: usize, patch: &mut [f32]) {
    let (h, w, c) = (s.h, s.w, s.cin);
    let k = s.depth();
    for r in 0..rows {
        let p = first + r;
        let (img, y, xx) = (p / (h * w), p / w % h, p % w);
        let dst = &mut patch[r * k..(r + 1) * k];
        for dy in 0..3 {
            let seg = &mut dst[dy * 3 * c..(dy + 1) * 3 * c];
            let Some(iy) = (y + dy).checked_sub(1).filter(|&iy| iy < h) else {
                seg.fill(0.0);
                continue;
            };
            let row = (img * h + iy) * w;
            if xx >= 1 && xx + 1 < w {
                seg.copy_from_slice(&x[(row + xx - 1) * c..(row + xx + 2) * c]);
            } else {
                for dx in 0..3 {
                    let part = &mut seg[dx * c..(dx + 1) * c];
                    match (xx + dx).checked_sub(1).filter(|&ix| ix < w) {
                        Some(ix) => part.copy_from_slice(&x[(row + ix) * c..(row + ix + 1) * c]),
                        None => part.fill(0.0),
                    }
                }
            }
        }
    }
}

/// `y = act(conv(x, kernel) + bias)`: `x` is `[n, h, w, cin]`, `kernel` packed `[9 * cin,
/// cout]` (see `layout::pack_kernel`), the result `[n, h, w, cout]`.
pub fn forward(
    x: &[f32],
    s: ConvShape,
    kernel: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    assert_eq!(
        x.len(),
        s.pixels() * s.cin,
        "conv input does not match its shape"
    );
    assert_eq!(
        kernel.len(),
        s.depth() * s.cout,
        "conv kernel does not match its shape"
    );
    let (k, cout) = (s.depth(), s.cout);
    let mut y = vec![0.0f32; s.pixels() * cout];
    if y.is_empty() {
        return y;
    }
    let rows = block_rows(k);
    y.par_chunks_mut(rows * cout).enumerate().for_each_init(
        Vec::new,
        |patch: &mut Vec<f32>, (j, dst)| {
            let m = dst.len() / cout;
            patch.resize(m * k, 0.0);
            im2col(x, s, j * rows, m, patch);
            matmul(
                (m, cout, k),
                MatRef::rows(patch, k),
                MatRef::rows(kernel, cout),
                dst,
                cout,
                false,
                Threads::Serial,
            );
            for px in dst.chunks_exact_mut(cout) {
                bias_relu(px, bias, relu);
            }
        },
    );
    y
}

/// A kernel made ready for the algorithm that suits its layer: Winograd F(2x2, 3x3) for
/// every layer but the first (3 channels in: too few for Winograd's transforms to pay), an
/// image at a time where an image fills the products (blocks 1-4), with the tiles of the
/// whole batch together otherwise (block5's 13x11).
pub enum Prepared {
    Im2col(Vec<f32>),
    Winograd(Vec<f32>),
}

impl Prepared {
    /// From an OIHW 3x3 kernel, for inputs of shape `s`.
    pub fn new(weight: &[f32], s: ConvShape) -> Self {
        if uses_winograd(s) {
            Prepared::Winograd(super::winograd::transform_kernel(weight, s.cout, s.cin))
        } else {
            Prepared::Im2col(super::layout::pack_kernel(weight, s.cout, s.cin))
        }
    }

    /// The kernel of the input-gradient convolution of a layer of shape `s` (turned 180
    /// degrees, in and out swapped), prepared the same way, made from this one.
    pub fn flipped(&self, s: ConvShape) -> Prepared {
        match self {
            Prepared::Im2col(k) => {
                Prepared::Im2col(super::layout::transpose_planes(k, 9, s.cin, s.cout, |t| {
                    8 - t
                }))
            }
            Prepared::Winograd(u) => {
                Prepared::Winograd(super::winograd::flip_transformed(u, s.cin, s.cout))
            }
        }
    }

    /// The input gradient of a layer of shape `s` from `dz`, its gradient before the ReLU:
    /// the forward of the flipped kernel. On block5's batch path the flipped kernel is read
    /// from this one in place; elsewhere it is made ([`Prepared::flipped`]).
    pub fn input_grad(&self, dz: &[f32], s: ConvShape) -> Vec<f32> {
        let t = s.transposed();
        match self {
            Prepared::Winograd(u) if !super::winograd::fills_products(t) => {
                super::winograd_batch::forward_flipped(dz, t, u)
            }
            _ => self.flipped(s).forward(dz, t, None, false),
        }
    }

    /// `y = act(conv(x) + bias)`, as [`forward`].
    pub fn forward(&self, x: &[f32], s: ConvShape, bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
        match self {
            Prepared::Im2col(k) => forward(x, s, k, bias, relu),
            Prepared::Winograd(u) if super::winograd::fills_products(s) => {
                super::winograd::forward(x, s, u, bias, relu)
            }
            Prepared::Winograd(u) => super::winograd_batch::forward(x, s, u, bias, relu),
        }
    }
}

/// A kernel prepared for the inference forward only: Winograd F(4x4, 3x3) where an image
/// fills its products (blocks 1-4 at 218 x 178), otherwise as the training forward's
/// [`Prepared`]. No backward pass uses it.
pub enum Inference {
    Winograd4(Vec<f32>),
    Same(Prepared),
}

impl Inference {
    /// From an OIHW 3x3 kernel, for inputs of shape `s`.
    pub fn new(weight: &[f32], s: ConvShape) -> Self {
        if super::winograd4::suits(s) {
            Inference::Winograd4(super::winograd4::transform_kernel(weight, s.cout, s.cin))
        } else {
            Inference::Same(Prepared::new(weight, s))
        }
    }

    /// `y = act(conv(x) + bias)`, as [`forward`].
    pub fn forward(&self, x: &[f32], s: ConvShape, bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
        match self {
            Inference::Winograd4(u) => super::winograd4::forward(x, s, u, bias, relu),
            Inference::Same(p) => p.forward(x, s, bias, relu),
        }
    }
}

/// Whether convolutions of shape `s` (forward, and kernel gradient) run on Winograd.
fn uses_winograd(s: ConvShape) -> bool {
    s.cin > 3
}

/// The name of the algorithm [`Prepared`] picks for the forward of shape `s` (for profiles).
pub fn algorithm(s: ConvShape) -> &'static str {
    match (uses_winograd(s), super::winograd::fills_products(s)) {
        (false, _) => "im2col",
        (true, true) => "winograd",
        (true, false) => "winograd/batch",
    }
}

/// The name of the algorithm [`Inference`] runs for shape `s`.
pub fn inference_algorithm(s: ConvShape) -> &'static str {
    if super::winograd4::suits(s) {
        "winograd 4x4"
    } else {
        algorithm(s)
    }
}

/// The gradient of a kernel, in the form its algorithm makes it.
pub enum KernelGrad {
    /// Packed `[9 * cin, cout]` like an im2col kernel.
    Packed(Vec<f32>),
    /// The gradient of the Winograd-transformed kernel, `[16][cout][cin]` as the kernel
    /// (`winograd::update_kernel` and `winograd::kernel_grad_from_transformed` make the
    /// kernel's own from it).
    Transformed(Vec<f32>),
}

impl KernelGrad {
    /// The gradient as an OIHW kernel of `cout` x `cin`.
    pub fn to_oihw(&self, cout: usize, cin: usize) -> Vec<f32> {
        match self {
            KernelGrad::Packed(p) => super::layout::unpack_kernel(p, cout, cin),
            KernelGrad::Transformed(du) => {
                super::winograd::kernel_grad_from_transformed(du, cout, cin)
            }
        }
    }
}

/// Gradients of one convolution + ReLU.
pub struct ConvGrads {
    pub kernel: KernelGrad,
    pub bias: Vec<f32>,
    /// Input gradient `[n, h, w, cin]`, when asked for.
    pub input: Option<Vec<f32>>,
}

/// Backward of `y = relu(conv(x) + b)` given `dy`: `kernel`, the layer's prepared kernel, is
/// needed only when the input gradient is asked for. The kernel gradient runs on Winograd
/// where the forward does (`winograd_batch::transformed_kernel_grad`, left as the gradient of
/// the transformed kernel), the input gradient as the forward of the flipped kernel.
pub fn backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    s: ConvShape,
    kernel: Option<&Prepared>,
) -> ConvGrads {
    let (dz, bias) = through_relu(y, dy, s);
    let input = kernel.map(|k| k.input_grad(&dz, s));
    let kernel = if uses_winograd(s) {
        KernelGrad::Transformed(super::winograd_batch::transformed_kernel_grad(x, &dz, s))
    } else {
        KernelGrad::Packed(im2col_kernel_grad(x, &dz, s))
    };
    ConvGrads {
        kernel,
        bias,
        input,
    }
}

/// The gradient before the ReLU (`dy` where `y > 0`) and the bias gradient (its sum).
fn through_relu(y: &[f32], dy: &[f32], s: ConvShape) -> (Vec<f32>, Vec<f32>) {
    let cout = s.cout;
    assert_eq!(
        y.len(),
        s.pixels() * cout,
        "conv output does not match its shape"
    );
    assert_eq!(
        dy.len(),
        y.len(),
        "conv output gradient does not match its shape"
    );
    let mut dz = dy.to_vec();
    dz.par_chunks_mut(4096)
        .zip(y.par_chunks(4096))
        .for_each(|(g, y)| {
            g.iter_mut()
                .zip(y)
                .for_each(|(g, &y)| *g = if y > 0.0 { *g } else { 0.0 })
        });
    let mut bias = vec![0.0f32; cout];
    for px in dz.chunks_exact(cout) {
        bias.iter_mut().zip(px).for_each(|(b, g)| *b += g);
    }
    (dz, bias)
}

/// [`backward`] on im2col: `flipped` is the flipped kernel packed for im2col
/// (`Prepared::flipped`), needed only when the input gradient is asked for.
pub fn backward_im2col(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    s: ConvShape,
    flipped: Option<&[f32]>,
) -> ConvGrads {
    let (dz, bias) = through_relu(y, dy, s);
    let kernel = KernelGrad::Packed(im2col_kernel_grad(x, &dz, s));
    let input = flipped.map(|f| forward(&dz, s.transposed(), f, None, false));
    ConvGrads {
        kernel,
        bias,
        input,
    }
}

/// Kernel gradient `patches^T . dz`, packed like the kernel, over groups of at most ~64 MB of
/// patches, summed in order.
fn im2col_kernel_grad(x: &[f32], dz: &[f32], s: ConvShape) -> Vec<f32> {
    let (k, cout) = (s.depth(), s.cout);
    let mut kernel = vec![0.0f32; k * cout];
    let rows = block_rows(k);
    let group = (((1usize << 24) / k.max(1)) / rows).max(1) * rows;
    let mut patch = Vec::new();
    for (g, first) in (0..s.pixels()).step_by(group).enumerate() {
        let m = group.min(s.pixels() - first);
        patch.resize(m * k, 0.0);
        patch
            .par_chunks_mut(rows * k)
            .enumerate()
            .for_each(|(j, block)| im2col(x, s, first + j * rows, block.len() / k, block));
        matmul(
            (k, cout, m),
            MatRef::transposed(&patch, k),
            MatRef::rows(&dz[first * cout..(first + m) * cout], cout),
            &mut kernel,
            cout,
            g > 0,
            Threads::All,
        );
    }
    kernel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::layout::{flip_kernel, pack_kernel};

    /// Direct convolution on NHWC with an OIHW kernel, in f64.
    fn direct(x: &[f32], s: ConvShape, w: &[f32], b: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0f64; s.pixels() * s.cout];
        for img in 0..s.n {
            for oy in 0..s.h {
                for ox in 0..s.w {
                    for o in 0..s.cout {
                        let mut acc = b[o] as f64;
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (iy, ix) = (oy as isize + dy - 1, ox as isize + dx - 1);
                                if iy < 0 || ix < 0 || iy >= s.h as isize || ix >= s.w as isize {
                                    continue;
                                }
                                for i in 0..s.cin {
                                    let xv = x[((img * s.h + iy as usize) * s.w + ix as usize)
                                        * s.cin
                                        + i];
                                    let wv =
                                        w[((o * s.cin + i) * 3 + dy as usize) * 3 + dx as usize];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((img * s.h + oy) * s.w + ox) * s.cout + o] = acc;
                    }
                }
            }
        }
        y
    }

    fn shape(n: usize, h: usize, w: usize, cin: usize, cout: usize) -> ConvShape {
        ConvShape { n, h, w, cin, cout }
    }

    fn data(len: usize, seed: f32) -> Vec<f32> {
        (0..len)
            .map(|i| (i as f32 * 0.7311 + seed).sin() * 1.3)
            .collect()
    }

    #[test]
    fn forward_matches_direct_convolution() {
        // several blocks, images that straddle blocks, a width of 1 and an odd height
        for s in [
            shape(3, 7, 9, 5, 6),
            shape(2, 5, 1, 3, 4),
            shape(2, 40, 23, 2, 3),
        ] {
            let x = data(s.pixels() * s.cin, 0.1);
            let w = data(s.cout * s.cin * 9, 0.5);
            let b = data(s.cout, 0.9);
            let y = forward(&x, s, &pack_kernel(&w, s.cout, s.cin), Some(&b), true);
            let want = direct(&x, s, &w, &b);
            for (a, e) in y.iter().zip(&want) {
                assert!((*a as f64 - e.max(0.0)).abs() < 1e-4, "{s:?}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences_of_the_direct_convolution() {
        let s = shape(2, 6, 5, 3, 4);
        let x = data(s.pixels() * s.cin, 0.2);
        let w = data(s.cout * s.cin * 9, 0.4);
        let b = data(s.cout, 0.6);
        let y = forward(&x, s, &pack_kernel(&w, s.cout, s.cin), Some(&b), true);
        let dy = data(y.len(), 1.7);
        // loss = sum(dy * relu(conv)), evaluated in f64
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            direct(x, s, w, b)
                .iter()
                .zip(&dy)
                .map(|(z, g)| z.max(0.0) * *g as f64)
                .sum()
        };
        let g = backward_im2col(
            &x,
            &y,
            &dy,
            s,
            Some(&pack_kernel(&flip_kernel(&w, s.cout, s.cin), s.cin, s.cout)),
        );
        let gw = g.kernel.to_oihw(s.cout, s.cin);
        let gx = g.input.expect("input gradient");
        let eps = 1e-3f32;
        let check = |analytic: f32, plus: f64, minus: f64, what: &str| {
            let numeric = (plus - minus) / (2.0 * eps as f64);
            assert!(
                (analytic as f64 - numeric).abs() < 2e-2 * (1.0 + numeric.abs()),
                "{what}: {analytic} vs {numeric}"
            );
        };
        for idx in [0, 7, 50, gw.len() - 1] {
            let (mut p, mut m) = (w.clone(), w.clone());
            p[idx] += eps;
            m[idx] -= eps;
            check(gw[idx], loss(&x, &p, &b), loss(&x, &m, &b), "kernel");
        }
        for idx in 0..s.cout {
            let (mut p, mut m) = (b.clone(), b.clone());
            p[idx] += eps;
            m[idx] -= eps;
            check(g.bias[idx], loss(&x, &w, &p), loss(&x, &w, &m), "bias");
        }
        for idx in [0, 13, 44, gx.len() - 1] {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[idx] += eps;
            m[idx] -= eps;
            check(gx[idx], loss(&p, &w, &b), loss(&m, &w, &b), "input");
        }
    }
}
