//! Winograd F(2x2, 3x3) with the tiles of the whole batch in each of the 16 products, and the
//! convolution's backward pass the same way.
//!
//! Block5's 13x11 pixels give 42 tiles an image, too few to fill a product on their own
//! (`winograd::forward` works an image at a time); here the tiles of a group of images are
//! transformed together, and each of the 16 planes is one product over all of them (the
//! buffers are plane-major, `[16][tiles][channels]`). The backward pass:
//! - input gradient: the same forward with the kernel turned 180 degrees and in/out swapped;
//! - kernel gradient: `U = G g G^T` makes the gradient of `g` equal to
//!   `G^T (sum over tiles of V ⊙ (A dz A^T)) G`, so it is 16 products `Z^T . V` over the
//!   tiles (V the input tiles as the forward transforms them, Z the output-gradient tiles),
//!   2.25x fewer multiply-adds than im2col's `patches^T . dz`. The 4x4 -> 3x3 transform is
//!   left to the optimiser's step (`winograd::update_kernel`), which reads the result once.
//!
//! Each product runs serially on one thread, the planes spread over the threads, and groups
//! of images are summed in order: every element is summed in one fixed order.

use std::cell::Cell;

use rayon::prelude::*;

use super::gemm::{MatRef, Threads, matmul};
use super::layout::split_planes;
use super::shape::{ConvShape, bias_relu, check_winograd_operands};
use super::winograd::{flipped_plane, input_tile, output_tile};

/// Largest tile buffer of one group, in floats (32 MiB).
const GROUP_FLOATS: usize = 8 << 20;

thread_local! {
    /// Tile buffers kept between calls on this thread: a training step asks for the same
    /// sizes every batch, and a reused buffer is neither allocated nor zeroed again. A buffer is
    /// taken out while in use, so a nested call simply starts with a new one.
    static SPARE: Cell<Vec<Vec<f32>>> = const { Cell::new(Vec::new()) };
}

/// A buffer from this thread's spares (any length; callers resize it), or a new one.
fn take_buffer() -> Vec<f32> {
    SPARE.with(|spare| {
        let mut all = spare.take();
        let buffer = all.pop().unwrap_or_default();
        spare.set(all);
        buffer
    })
}

/// Keeps `buffer` for the next call on this thread (at most three are kept).
fn keep_buffer(buffer: Vec<f32>) {
    SPARE.with(|spare| {
        let mut all = spare.take();
        if all.len() < 3 {
            all.push(buffer);
        }
        spare.set(all);
    })
}

/// Tiles of one image, as tile rows x tile columns.
fn tiles_per_image(s: ConvShape) -> (usize, usize) {
    (s.h.div_ceil(2), s.w.div_ceil(2))
}

/// Images per group: as many as keep the widest of the group's tile buffers under
/// [`GROUP_FLOATS`], at least one.
fn group_images(s: ConvShape) -> usize {
    let (th, tw) = tiles_per_image(s);
    (GROUP_FLOATS / (th * tw * 16 * s.cin.max(s.cout)).max(1)).max(1)
}

/// `V`: the transformed 4x4 input tiles of images `images` of `x`, plane-major
/// `[16][tile][cin]`, tiles in image, row, column order.
fn transform_inputs(x: &[f32], s: ConvShape, images: std::ops::Range<usize>, v: &mut Vec<f32>) {
    let (th, tw) = tiles_per_image(s);
    let (h, w, c) = (s.h, s.w, s.cin);
    let count = images.len() * th * tw;
    v.resize(16 * count * c, 0.0);
    split_planes(v, count, c, th * tw)
        .into_par_iter()
        .enumerate()
        .for_each_init(Vec::new, |d, (j, mut planes)| {
            let img = &x[(images.start + j) * h * w * c..][..h * w * c];
            d.resize(16 * c, 0.0);
            for t in 0..th * tw {
                input_tile(img, h, w, c, t / tw, t % tw, d);
                for (xi, plane) in planes.iter_mut().enumerate() {
                    plane[t * c..][..c].copy_from_slice(&d[xi * c..][..c]);
                }
            }
        });
}

/// `Z = A dz A^T` of every 2x2 output-gradient tile of images `images`, plane-major
/// `[16][tile][cout]` (pixels outside the image count as zero).
fn transform_output_grads(
    dz: &[f32],
    s: ConvShape,
    images: std::ops::Range<usize>,
    z: &mut Vec<f32>,
) {
    let (th, tw) = tiles_per_image(s);
    let (h, w, c) = (s.h, s.w, s.cout);
    let count = images.len() * th * tw;
    z.resize(16 * count * c, 0.0);
    split_planes(z, count, c, th * tw)
        .into_par_iter()
        .enumerate()
        .for_each_init(Vec::new, |zero, (j, mut planes)| {
            let img = images.start + j;
            zero.resize(c, 0.0);
            for t in 0..th * tw {
                let (ty, tx) = (t / tw, t % tw);
                let px = |r: usize, cc: usize| {
                    let (y, x) = (2 * ty + r, 2 * tx + cc);
                    if y < h && x < w {
                        &dz[((img * h + y) * w + x) * c..][..c]
                    } else {
                        &zero[..]
                    }
                };
                let (g00, g01, g10, g11) = (px(0, 0), px(0, 1), px(1, 0), px(1, 1));
                for (xi, plane) in planes.iter_mut().enumerate() {
                    // element (r, col) of A dz A^T weighs dz(i, j) by A[r][i] A[col][j]
                    let (r, col) = (xi / 4, xi % 4);
                    let [c00, c01, c10, c11] =
                        [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(i, j)| A[r][i] * A[col][j]);
                    let out = &mut plane[t * c..][..c];
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = c00 * g00[k] + c01 * g01[k] + c10 * g10[k] + c11 * g11[k];
                    }
                }
            }
        });
}

/// Winograd's output matrix of F(2x2, 3x3), `A` (its transpose sums a tile's 16 products
/// into 2x2 outputs).
const A: [[f32; 2]; 4] = [[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [0.0, -1.0]];

/// `y = act(conv(x) + bias)` with `u` from `winograd::transform_kernel`; same contract as
/// `conv3x3::forward`.
pub fn forward(x: &[f32], s: ConvShape, u: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    check_winograd_operands(x, s, u, 16);
    let n = s.cin * s.cout;
    // the planes are `cout x cin` (see `winograd::transform_kernel`): read transposed
    forward_planes(
        x,
        s,
        |xi| MatRef::transposed(&u[xi * n..(xi + 1) * n], s.cin),
        bias,
        relu,
    )
}

/// The input gradient's convolution (shape `t`, the forward's transposed: `t.cin` is the
/// forward's `cout`) with the flipped kernel, read from the forward's transformed kernel `u`
/// (`[16][t.cin][t.cout]`, the forward's `out x in` planes) without making the flipped one:
/// plane `(a, b)` of the flipped kernel is plane `(p(a), p(b))` of `u` transposed, `p`
/// swapping 0 and 3 (see `winograd::flip_transformed`), which is the `t.cin x t.cout` matrix
/// the product wants, read in place.
pub fn forward_flipped(dz: &[f32], t: ConvShape, u: &[f32]) -> Vec<f32> {
    check_winograd_operands(dz, t, u, 16);
    let n = t.cin * t.cout;
    forward_planes(
        dz,
        t,
        |xi| {
            let q = flipped_plane(xi);
            MatRef::rows(&u[q * n..(q + 1) * n], t.cout)
        },
        None,
        false,
    )
}

/// The forward with the 16 kernel planes (`cin x cout` matrices) that `plane` gives.
fn forward_planes<'u>(
    x: &[f32],
    s: ConvShape,
    plane: impl Fn(usize) -> MatRef<'u> + Sync,
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let (h, w, cin, cout) = (s.h, s.w, s.cin, s.cout);
    let (th, tw) = tiles_per_image(s);
    let mut y = vec![0.0f32; s.pixels() * cout];
    if y.is_empty() {
        return y;
    }
    let (mut v, mut m) = (take_buffer(), take_buffer());
    let per_group = group_images(s);
    for first in (0..s.n).step_by(per_group) {
        let images = first..(first + per_group).min(s.n);
        let count = images.len() * th * tw;
        transform_inputs(x, s, images.clone(), &mut v);
        m.resize(16 * count * cout, 0.0);
        m.par_chunks_mut(count * cout)
            .enumerate()
            .for_each(|(xi, dst)| {
                matmul(
                    (count, cout, cin),
                    MatRef::rows(&v[xi * count * cin..(xi + 1) * count * cin], cin),
                    plane(xi),
                    dst,
                    cout,
                    false,
                    Threads::Serial,
                )
            });
        y[images.start * h * w * cout..images.end * h * w * cout]
            .par_chunks_mut(h * w * cout)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (j, y_img)| {
                for t in j * th * tw..(j + 1) * th * tw {
                    let (ty, tx) = (t / tw % th, t % tw);
                    let plane = |xi: usize| &m[(xi * count + t) * cout..][..cout];
                    output_tile(plane, cout, scratch, |r, cc, px| {
                        let (oy, ox) = (2 * ty + r, 2 * tx + cc);
                        if oy < h && ox < w {
                            let out = &mut y_img[(oy * w + ox) * cout..][..cout];
                            out.copy_from_slice(px);
                            bias_relu(out, bias, relu);
                        }
                    });
                }
            });
    }
    keep_buffer(v);
    keep_buffer(m);
    y
}

/// Gradient of the transformed kernel `U` of `z = conv(x)` given `dz`, `[16][cout][cin]` as
/// `U` (`winograd::update_kernel` and `winograd::kernel_grad_from_transformed` make the
/// kernel's own from it).
pub fn transformed_kernel_grad(x: &[f32], dz: &[f32], s: ConvShape) -> Vec<f32> {
    assert_eq!(
        x.len(),
        s.pixels() * s.cin,
        "conv input does not match its shape"
    );
    assert_eq!(
        dz.len(),
        s.pixels() * s.cout,
        "conv output gradient does not match its shape"
    );
    let (cin, cout) = (s.cin, s.cout);
    let (th, tw) = tiles_per_image(s);
    // M[xi] = sum over tiles of Z[xi]^T . V[xi], [16][cout][cin] (the first group's
    // products overwrite it)
    let mut m = vec![0.0f32; 16 * cin * cout];
    if s.pixels() == 0 {
        return m;
    }
    let (mut v, mut z) = (take_buffer(), take_buffer());
    let per_group = group_images(s);
    for (g, first) in (0..s.n).step_by(per_group).enumerate() {
        let images = first..(first + per_group).min(s.n);
        let count = images.len() * th * tw;
        transform_inputs(x, s, images.clone(), &mut v);
        transform_output_grads(dz, s, images, &mut z);
        m.par_chunks_mut(cin * cout)
            .enumerate()
            .for_each(|(xi, plane)| {
                matmul(
                    (cout, cin, count),
                    MatRef::transposed(&z[xi * count * cout..(xi + 1) * count * cout], cout),
                    MatRef::rows(&v[xi * count * cin..(xi + 1) * count * cin], cin),
                    plane,
                    cin,
                    g > 0,
                    Threads::Serial,
                )
            });
    }
    keep_buffer(v);
    keep_buffer(z);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv3x3;
    use crate::kernels::layout::{flip_kernel, pack_kernel};
    use crate::kernels::winograd::{
        flip_transformed, kernel_grad_from_transformed, transform_kernel,
    };

    fn data(len: usize, k: f32) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * k).sin()).collect()
    }

    /// Odd and even sizes, a 1x1 image, and a batch split into two groups.
    fn shapes() -> [ConvShape; 4] {
        let s = |n, h, w, cin, cout| ConvShape { n, h, w, cin, cout };
        [
            s(3, 7, 9, 5, 6),
            s(2, 13, 11, 8, 4),
            s(1, 1, 1, 2, 2),
            s(2, 40, 40, 700, 8),
        ]
    }

    #[test]
    fn forward_matches_im2col_convolution() {
        assert_eq!(group_images(shapes()[3]), 1);
        for s in shapes() {
            let x = data(s.pixels() * s.cin, 0.613);
            let wt: Vec<f32> = data(s.cout * s.cin * 9, 0.271)
                .iter()
                .map(|v| v * 0.3)
                .collect();
            let b: Vec<f32> = (0..s.cout).map(|i| i as f32 * 0.01 - 0.02).collect();
            let want = conv3x3::forward(&x, s, &pack_kernel(&wt, s.cout, s.cin), Some(&b), true);
            let got = forward(&x, s, &transform_kernel(&wt, s.cout, s.cin), Some(&b), true);
            let scale = (s.cin as f32).sqrt();
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() < 1e-5 * scale * (1.0 + e.abs()),
                    "{s:?}: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn backward_matches_im2col_gradients() {
        for s in shapes() {
            let x = data(s.pixels() * s.cin, 0.417);
            let wt = data(s.cout * s.cin * 9, 0.193);
            let dz = data(s.pixels() * s.cout, 0.731);
            // kernel gradient: patches^T . dz, through conv3x3's im2col backward (no ReLU:
            // an all-positive output)
            let ones = vec![1.0f32; dz.len()];
            let want = conv3x3::backward_im2col(&x, &ones, &dz, s, None)
                .kernel
                .to_oihw(s.cout, s.cin);
            let got =
                kernel_grad_from_transformed(&transformed_kernel_grad(&x, &dz, s), s.cout, s.cin);
            let scale = (s.pixels() as f32).sqrt();
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() < 2e-5 * scale * (1.0 + e.abs()),
                    "{s:?}: {g} vs {e}"
                );
            }
            // input gradient: the forward of the flipped kernel
            let t = ConvShape {
                cin: s.cout,
                cout: s.cin,
                ..s
            };
            let flipped = flip_kernel(&wt, s.cout, s.cin);
            let want = conv3x3::forward(&dz, t, &pack_kernel(&flipped, s.cin, s.cout), None, false);
            let got = forward(
                &dz,
                t,
                &flip_transformed(&transform_kernel(&wt, s.cout, s.cin), s.cin, s.cout),
                None,
                false,
            );
            // the same, read from the forward's kernel without flipping it first
            assert_eq!(
                forward_flipped(&dz, t, &transform_kernel(&wt, s.cout, s.cin)),
                got,
                "{s:?}"
            );
            let scale = (s.cout as f32).sqrt();
            for (g, e) in got.iter().zip(&want) {
                assert!(
                    (g - e).abs() < 1e-5 * scale * (1.0 + e.abs()),
                    "{s:?}: {g} vs {e}"
                );
            }
        }
    }
}
