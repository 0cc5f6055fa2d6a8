//! 3x3 'same' convolution by Winograd's F(2x2, 3x3) on NHWC: each 2x2 block of output pixels
//! comes from a 4x4 input tile through 16 products per channel pair instead of 36, so the
//! matrix products do 2.25x less work than im2col. The 16 products of a group of tiles are 16
//! `gemm` calls (tiles x in) . (in x out); input and output transforms are additions only.
//! This module works an image at a time (blocks 1-4, whose images have tiles enough to fill
//! the products); `winograd_batch` gathers the tiles of many images (block5) and holds the
//! backward pass. The 3-channel first layer stays on im2col (see `conv3x3::Prepared`).

use rayon::prelude::*;

use super::gemm::{MatRef, Threads, matmul};
use super::shape::{ConvShape, bias_relu, check_winograd_operands};

/// Winograd's kernel matrix of F(2x2, 3x3).
pub(super) const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The transformed kernel `U = G g G^T`, laid out `[16][in][out]`, from an OIHW 3x3 kernel.
pub fn transform_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    super::layout::per_kernel_planes(w, out_ch, in_ch, transform_one)
}

/// `G g G^T` of one 3x3 kernel `g` (row-major), as 16 values `a * 4 + b`. `G`'s rows are
/// (1, 0, 0), (1/2, 1/2, 1/2), (1/2, -1/2, 1/2), (0, 0, 1), written out: halving is exact, so
/// this is the matrix product to the bit.
#[inline]
fn transform_one(g: &[f32]) -> [f32; 16] {
    #[inline(always)]
    fn g_times(x0: f32, x1: f32, x2: f32) -> [f32; 4] {
        [x0, 0.5 * ((x0 + x1) + x2), 0.5 * ((x0 - x1) + x2), x2]
    }
    // columns of G g: G times each column of g
    let c0 = g_times(g[0], g[3], g[6]);
    let c1 = g_times(g[1], g[4], g[7]);
    let c2 = g_times(g[2], g[5], g[8]);
    let mut u = [0.0f32; 16];
    for a in 0..4 {
        // row a of (G g) G^T is G times row a of G g
        u[a * 4..a * 4 + 4].copy_from_slice(&g_times(c0[a], c1[a], c2[a]));
    }
    u
}

/// The transformed kernel of the input-gradient convolution (the kernel turned 180 degrees,
/// in and out swapped) from `u` of the forward kernel (`[16][in][out]`), without going back
/// to the kernel: reversing a 3x3 kernel swaps rows 0 and 3 of `G g`, so plane `(a, b)` of the
/// result is plane `(p(a), p(b))` of `u` transposed, with `p` swapping 0 and 3.
pub fn flip_transformed(u: &[f32], in_ch: usize, out_ch: usize) -> Vec<f32> {
    let p = |a: usize| match a {
        0 => 3,
        3 => 0,
        a => a,
    };
    super::layout::transpose_planes(u, 16, in_ch, out_ch, |xi| p(xi / 4) * 4 + p(xi % 4))
}

/// A Winograd scheme F(m x m, 3x3) for the per-image forward: output tiles of `M x M`
/// pixels from `(M + 2) x (M + 2)` input tiles, through `PLANES = (M + 2)^2` products.
pub(super) trait Scheme {
    const M: usize;
    const PLANES: usize;
    /// `d = B^T x B`: input tile `(ty, tx)` of one image `x` (`h x w x c`, zero outside),
    /// transformed, into `d` as `PLANES` rows of `c`.
    fn input_tile(x: &[f32], h: usize, w: usize, c: usize, ty: usize, tx: usize, d: &mut [f32]);
    /// `Y = A^T M A` of one tile, whose products (`c` long each) `plane(xi)` gives: hands
    /// each of the `M x M` outputs to `put(row, col, values)`; `z` is scratch.
    fn output_tile<'m>(
        plane: impl Fn(usize) -> &'m [f32],
        c: usize,
        z: &mut Vec<f32>,
        put: impl FnMut(usize, usize, &[f32]),
    );
}

/// F(2x2, 3x3).
pub(super) struct F2;

impl Scheme for F2 {
    const M: usize = 2;
    const PLANES: usize = 16;
    fn input_tile(x: &[f32], h: usize, w: usize, c: usize, ty: usize, tx: usize, d: &mut [f32]) {
        input_tile(x, h, w, c, ty, tx, d)
    }
    fn output_tile<'m>(
        plane: impl Fn(usize) -> &'m [f32],
        c: usize,
        z: &mut Vec<f32>,
        put: impl FnMut(usize, usize, &[f32]),
    ) {
        output_tile(plane, c, z, put)
    }
}

/// Tiles per group: the transformed planes of a group take about 2 MB.
fn group_tiles<S: Scheme>(channels: usize) -> usize {
    ((1usize << 19) / (S::PLANES * channels.max(1))).max(16)
}

/// Whether one image of shape `s` has tiles enough to fill this scheme's products (otherwise
/// `winograd_batch::forward` is faster).
pub(super) fn fills_products_with<S: Scheme>(s: ConvShape) -> bool {
    s.h.div_ceil(S::M) * s.w.div_ceil(S::M) >= group_tiles::<S>(s.cin.max(s.cout))
}

/// Whether one image of shape `s` has tiles enough to fill F(2x2, 3x3)'s products.
pub fn fills_products(s: ConvShape) -> bool {
    fills_products_with::<F2>(s)
}

/// `y = act(conv(x) + bias)` with `u` from [`transform_kernel`]; same contract as
/// `conv3x3::forward`.
pub fn forward(x: &[f32], s: ConvShape, u: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    forward_with::<F2>(x, s, u, bias, relu)
}

/// [`forward`] with scheme `S`, `u` laid out `[PLANES][in][out]`, an image at a time.
pub(super) fn forward_with<S: Scheme>(
    x: &[f32],
    s: ConvShape,
    u: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    check_winograd_operands(x, s, u, S::PLANES);
    let (h, w, cin, cout) = (s.h, s.w, s.cin, s.cout);
    let mut y = vec![0.0f32; s.pixels() * cout];
    if y.is_empty() {
        return y;
    }
    let (th, tw) = (h.div_ceil(S::M), w.div_ceil(S::M));
    let rows_per_job = (group_tiles::<S>(cin.max(cout)) / tw).clamp(1, th);
    y.par_chunks_mut(h * w * cout)
        .enumerate()
        .for_each(|(img, y_img)| {
            let x_img = &x[img * h * w * cin..(img + 1) * h * w * cin];
            y_img
                .par_chunks_mut(S::M * rows_per_job * w * cout)
                .enumerate()
                .for_each_init(Scratch::default, |scratch, (job, dst)| {
                    let ty0 = job * rows_per_job;
                    let ty1 = (ty0 + rows_per_job).min(th);
                    tile_rows::<S>(x_img, s, u, bias, relu, ty0..ty1, dst, scratch);
                });
        });
    y
}

#[derive(Default)]
struct Scratch {
    v: Vec<f32>,
    m: Vec<f32>,
    d: Vec<f32>,
}

/// Output tile rows `tiles` of one image into `dst` (its output rows from `M * tiles.start`).
#[allow(clippy::too_many_arguments)]
fn tile_rows<S: Scheme>(
    x: &[f32],
    s: ConvShape,
    u: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    tiles: std::ops::Range<usize>,
    dst: &mut [f32],
    sc: &mut Scratch,
) {
    let (h, w, cin, cout) = (s.h, s.w, s.cin, s.cout);
    let (p, m) = (S::PLANES, S::M);
    let tw = w.div_ceil(m);
    let count = tiles.len() * tw;
    sc.v.resize(p * count * cin, 0.0);
    sc.m.resize(p * count * cout, 0.0);
    sc.d.resize(p * cin.max(cout), 0.0);
    // input transform: V = B^T d B for every tile, into the planes [count x cin]
    for (t, (ty, tx)) in tiles
        .clone()
        .flat_map(|ty| (0..tw).map(move |tx| (ty, tx)))
        .enumerate()
    {
        let d = &mut sc.d[..p * cin];
        S::input_tile(x, h, w, cin, ty, tx, d);
        for (xi, seg) in d.chunks_exact(cin).enumerate() {
            sc.v[(xi * count + t) * cin..][..cin].copy_from_slice(seg);
        }
    }
    for xi in 0..p {
        matmul(
            (count, cout, cin),
            MatRef::rows(&sc.v[xi * count * cin..(xi + 1) * count * cin], cin),
            MatRef::rows(&u[xi * cin * cout..(xi + 1) * cin * cout], cout),
            &mut sc.m[xi * count * cout..(xi + 1) * count * cout],
            cout,
            false,
            Threads::Serial,
        );
    }
    // output transform: Y = A^T M A (M x M), + bias, ReLU
    let rows_here = dst.len() / (w * cout);
    for (t, (ty, tx)) in tiles
        .clone()
        .flat_map(|ty| (0..tw).map(move |tx| (ty, tx)))
        .enumerate()
    {
        let plane = |xi: usize| &sc.m[(xi * count + t) * cout..][..cout];
        S::output_tile(plane, cout, &mut sc.d, |r, cc, px| {
            let (oy, ox) = (m * (ty - tiles.start) + r, m * tx + cc);
            if oy < rows_here && ox < w {
                let out = &mut dst[(oy * w + ox) * cout..][..cout];
                out.copy_from_slice(px);
                bias_relu(out, bias, relu);
            }
        });
    }
}

/// The `T x T` input tile of one image `x` (`h x w x c`) whose top-left pixel is
/// `(y0 - 1, x0 - 1)` (the 'same' padding), into `d` as `T * T` rows of `c`, zero outside.
pub(super) fn gather_tile<const T: usize>(
    x: &[f32],
    h: usize,
    w: usize,
    c: usize,
    (y0, x0): (usize, usize),
    d: &mut [f32],
) {
    for a in 0..T {
        let iy = (y0 + a).checked_sub(1).filter(|&iy| iy < h);
        for b in 0..T {
            let ix = (x0 + b).checked_sub(1).filter(|&ix| ix < w);
            let seg = &mut d[(a * T + b) * c..(a * T + b + 1) * c];
            match (iy, ix) {
                (Some(iy), Some(ix)) => seg.copy_from_slice(&x[(iy * w + ix) * c..][..c]),
                _ => seg.fill(0.0),
            }
        }
    }
}

/// `d = B^T x B`: the 4x4 input tile `(ty, tx)` of one image `x` (`h x w x c`, zero outside),
/// transformed, into `d` as 16 rows of `c` (row `a * 4 + b`).
pub(super) fn input_tile(
    x: &[f32],
    h: usize,
    w: usize,
    c: usize,
    ty: usize,
    tx: usize,
    d: &mut [f32],
) {
    gather_tile::<4>(x, h, w, c, (2 * ty, 2 * tx), d);
    // d <- B^T d B, in place: first down each column, then along each row
    for b in 0..4 {
        let [r0, r1, r2, r3] = rows(d, c, [b, 4 + b, 8 + b, 12 + b]);
        bt4(r0, r1, r2, r3);
    }
    for a in 0..4 {
        let [r0, r1, r2, r3] = rows(d, c, [4 * a, 4 * a + 1, 4 * a + 2, 4 * a + 3]);
        bt4(r0, r1, r2, r3);
    }
}

/// `Y = A^T M A` of one tile, whose 16 products (`c` long each) `plane(xi)` gives: hands each
/// of the 2x2 outputs to `put(row, col, values)`; `z` is scratch.
pub(super) fn output_tile<'m>(
    plane: impl Fn(usize) -> &'m [f32],
    c: usize,
    z: &mut Vec<f32>,
    mut put: impl FnMut(usize, usize, &[f32]),
) {
    z.resize(10 * c, 0.0);
    let (rows, px) = z.split_at_mut(8 * c);
    // rows[r][b] = row r of A^T M: r = 0 -> m0b + m1b + m2b, r = 1 -> m1b - m2b - m3b
    for b in 0..4 {
        let (m0, m1, m2, m3) = (plane(b), plane(4 + b), plane(8 + b), plane(12 + b));
        let (z0, z1) = rows.split_at_mut(4 * c);
        let z0 = &mut z0[b * c..][..c];
        let z1 = &mut z1[b * c..][..c];
        for (k, (z0, z1)) in z0.iter_mut().zip(z1.iter_mut()).enumerate() {
            *z0 = m0[k] + m1[k] + m2[k];
            *z1 = m1[k] - m2[k] - m3[k];
        }
    }
    for r in 0..2 {
        let zr = &rows[r * 4 * c..][..4 * c];
        let (z0, z1, z2, z3) = (&zr[..c], &zr[c..2 * c], &zr[2 * c..3 * c], &zr[3 * c..]);
        for (k, o) in px[..c].iter_mut().enumerate() {
            *o = z0[k] + z1[k] + z2[k];
        }
        for (k, o) in px[c..].iter_mut().enumerate() {
            *o = z1[k] - z2[k] - z3[k];
        }
        put(r, 0, &px[..c]);
        put(r, 1, &px[c..]);
    }
}

/// `(d0, d1, d2, d3) <- (d0 - d2, d1 + d2, d2 - d1, d1 - d3)`, element-wise (`B^T` of F(2, 3)).
fn bt4(r0: &mut [f32], r1: &mut [f32], r2: &mut [f32], r3: &mut [f32]) {
    for (((a, b), c), d) in r0
        .iter_mut()
        .zip(r1.iter_mut())
        .zip(r2.iter_mut())
        .zip(r3.iter_mut())
    {
        let (d0, d1, d2, d3) = (*a, *b, *c, *d);
        *a = d0 - d2;
        *b = d1 + d2;
        *c = d2 - d1;
        *d = d1 - d3;
    }
}

/// `N` disjoint `len`-long rows of `buf`, by row index (indices must differ and lie among its
/// first 36 rows, a tile's planes).
pub(super) fn rows<const N: usize>(
    buf: &mut [f32],
    len: usize,
    idx: [usize; N],
) -> [&mut [f32]; N] {
    let mut slots: [Option<&mut [f32]>; 36] = std::array::from_fn(|_| None);
    for (k, chunk) in buf.chunks_exact_mut(len).enumerate().take(36) {
        slots[k] = Some(chunk);
    }
    idx.map(|i| slots[i].take().expect("distinct rows of a tile"))
}

/// Checks a Winograd forward (`transform` then `forward`, with bias and ReLU) against im2col's
/// on `shapes`: `close(got, want, largest |want|)` must hold for every output.
#[cfg(test)]
pub(super) fn check_against_im2col(
    shapes: &[ConvShape],
    transform: impl Fn(&[f32], usize, usize) -> Vec<f32>,
    forward: impl Fn(&[f32], ConvShape, &[f32], Option<&[f32]>, bool) -> Vec<f32>,
    close: impl Fn(f32, f32, f32) -> bool,
) {
    use crate::kernels::{conv3x3, layout::pack_kernel};
    for &s in shapes {
        let x: Vec<f32> = (0..s.pixels() * s.cin)
            .map(|i| (i as f32 * 0.613).sin())
            .collect();
        let wt: Vec<f32> = (0..s.cout * s.cin * 9)
            .map(|i| (i as f32 * 0.271).cos() * 0.3)
            .collect();
        let b: Vec<f32> = (0..s.cout).map(|i| i as f32 * 0.01 - 0.02).collect();
        let want = conv3x3::forward(&x, s, &pack_kernel(&wt, s.cout, s.cin), Some(&b), true);
        let got = forward(&x, s, &transform(&wt, s.cout, s.cin), Some(&b), true);
        assert_eq!(got.len(), want.len(), "{s:?}");
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (&g, &e) in got.iter().zip(&want) {
            assert!(close(g, e, scale), "{s:?}: {g} vs {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_out_transform_is_the_matrix_product() {
        for seed in 0..50 {
            let g: Vec<f32> = (0..9)
                .map(|i| ((i * 7 + seed) as f32 * 0.913).sin() * 3.0)
                .collect();
            let mut t = [[0.0f32; 3]; 4];
            for (a, row) in t.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| G[a][k] * g[k * 3 + j]).sum();
                }
            }
            let mut want = [0.0f32; 16];
            for a in 0..4 {
                for b in 0..4 {
                    want[a * 4 + b] = (0..3).map(|j| t[a][j] * G[b][j]).sum();
                }
            }
            let got = transform_one(&g);
            for (x, y) in got.iter().zip(&want) {
                assert_eq!(
                    x.to_bits() & !(1 << 31),
                    y.to_bits() & !(1 << 31),
                    "{got:?} vs {want:?}"
                );
            }
        }
    }

    #[test]
    fn flipped_transform_is_the_transform_of_the_flipped_kernel() {
        let (o, i) = (5, 7);
        let w: Vec<f32> = (0..o * i * 9).map(|v| (v as f32 * 0.37).sin()).collect();
        let want = transform_kernel(&crate::kernels::layout::flip_kernel(&w, o, i), i, o);
        let got = flip_transformed(&transform_kernel(&w, o, i), i, o);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() < 1e-6, "{g} vs {e}");
        }
    }

    #[test]
    fn matches_im2col_convolution_on_odd_and_even_sizes() {
        let s = |n, h, w, cin, cout| ConvShape { n, h, w, cin, cout };
        check_against_im2col(
            &[
                s(2, 7, 9, 5, 6),
                s(3, 8, 4, 8, 3),
                s(1, 1, 1, 2, 2),
                s(2, 27, 22, 16, 24),
            ],
            transform_kernel,
            forward,
            |g, e, _| (g - e).abs() < 1e-5 * (1.0 + e.abs()),
        );
    }
}
