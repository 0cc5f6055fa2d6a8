//! 3x3 'same' convolution by Winograd's F(2x2, 3x3) on NHWC: each 2x2 block of output pixels
//! comes from a 4x4 input tile through 16 products per channel pair instead of 36, so the
//! matrix products do 2.25x less work than im2col. The 16 products of a group of tiles are 16
//! `gemm` calls (tiles x in) . (in x out); input and output transforms are additions only.
//! This module works an image at a time (blocks 1-4, whose images have tiles enough to fill
//! the products); `winograd_batch` gathers the tiles of many images (block5) and holds the
//! backward pass. The 3-channel first layer stays on im2col (see `conv3x3::Prepared`).

use rayon::prelude::*;

use super::gemm::{MatRef, Threads, matmul};
use super::layout::{fill_kernel_rows, per_kernel_rows_into, split_planes};
use super::shape::{ConvShape, bias_relu, check_winograd_operands};

/// Winograd's kernel matrix of F(2x2, 3x3), which the tests check the written-out transforms
/// against.
#[cfg(test)]
const G: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// The transformed kernel `U = G g G^T`, laid out `[16][out][in]` (each plane the kernel's
/// `out x in` matrix, in OIHW's order), from an OIHW 3x3 kernel.
pub fn transform_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; 16 * in_ch * out_ch];
    transform_kernel_into(w, out_ch, in_ch, &mut u);
    u
}

/// [`transform_kernel`] into `u`, a buffer of the same size (a training step's last kernel,
/// refilled from the updated weights without allocating another).
pub fn transform_kernel_into(w: &[f32], out_ch: usize, in_ch: usize, u: &mut [f32]) {
    per_kernel_rows_into(w, out_ch, in_ch, transform_one, u)
}

/// One optimiser step of a 3x3 kernel from `du`, the gradient of its transform `U = G g G^T`
/// (`[16][out][in]`, laid out as [`transform_kernel`] lays out `U`), in one pass over the
/// kernel where the gradient, the update and the next transform would each make their own.
/// Sixteen output channels a job, on all threads:
/// - the kernels' gradient `dg = G^T dU G`, OIHW, from the job's rows of `du`;
/// - `update(gradient, parts)`, with the job's part of each of `arrays` (OIHW arrays of the
///   kernel's size: the kernel first, then whatever the optimiser keeps, such as Adam's
///   moments);
/// - the job's rows of `u` refilled with the transform of the updated kernel (`arrays[0]`),
///   exactly as [`transform_kernel`] makes it.
pub fn update_kernel<const N: usize>(
    du: &[f32],
    out_ch: usize,
    in_ch: usize,
    arrays: [&mut [f32]; N],
    u: &mut [f32],
    update: impl Fn(&[f32], [&mut [f32]; N]) + Sync,
) {
    assert!(
        N > 0 && u.len() == du.len(),
        "the kernel and its transform are needed"
    );
    by_output_blocks(du, out_ch, in_ch, arrays, Some(u), update)
}

/// The OIHW gradient of a kernel from `du`, that of its transform (see [`update_kernel`]),
/// each element summed in the same order as there.
pub fn kernel_grad_from_transformed(du: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    let mut grad = vec![0.0f32; 9 * in_ch * out_ch];
    by_output_blocks(du, out_ch, in_ch, [&mut grad], None, |g, [dst]| {
        dst.copy_from_slice(g)
    });
    grad
}

/// [`update_kernel`]'s driver: `u`, when given, is refilled from `arrays[0]`. A job is a
/// block of output channels: its rows of `du` and `u` (`[16][out][in]`) and its parts of the
/// OIHW arrays are each one contiguous run, so every array is read and written in long runs.
fn by_output_blocks<const N: usize>(
    du: &[f32],
    out_ch: usize,
    in_ch: usize,
    arrays: [&mut [f32]; N],
    u: Option<&mut [f32]>,
    update: impl Fn(&[f32], [&mut [f32]; N]) + Sync,
) {
    const OB: usize = 16;
    let len = 9 * in_ch * out_ch;
    assert!(
        du.len() == 16 * in_ch * out_ch && arrays.iter().all(|a| a.len() == len),
        "kernel gradient does not match the kernel's shape"
    );
    if len == 0 {
        return;
    }
    let jobs = out_ch.div_ceil(OB);
    let mut parts = arrays.map(|a| a.chunks_mut(OB * in_ch * 9));
    let blocks: Vec<[&mut [f32]; N]> = (0..jobs)
        .map(|_| parts.each_mut().map(|p| p.next().unwrap_or_default()))
        .collect();
    let rows: Vec<Option<Vec<&mut [f32]>>> = match u {
        Some(u) => split_planes(u, out_ch, in_ch, OB)
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..jobs).map(|_| None).collect(),
    };
    blocks.into_par_iter().zip(rows).enumerate().for_each_init(
        Vec::new,
        |grad, (k, (mut block, rows))| {
            let outputs = k * OB..k * OB + block[0].len() / (in_ch * 9);
            grad_rows(du, out_ch, in_ch, outputs, grad);
            update(grad, block.each_mut().map(|p| &mut **p));
            if let Some(mut rows) = rows {
                fill_kernel_rows(block[0], in_ch, &mut rows, &transform_one);
            }
        },
    );
}

/// The kernels' gradient `G^T dU G` of outputs `outputs` and every input, OIHW, into `grad`,
/// from their rows of `du` (`[16][out][in]`): sixteen kernels side by side (the loop over
/// them vectorises).
fn grad_rows(
    du: &[f32],
    out_ch: usize,
    in_ch: usize,
    outputs: std::ops::Range<usize>,
    grad: &mut Vec<f32>,
) {
    const L: usize = 16;
    grad.resize(outputs.len() * in_ch * 9, 0.0);
    let mut out = [[0.0f32; 9]; L];
    for (o, dst) in outputs.zip(grad.chunks_exact_mut(in_ch * 9)) {
        let rows: [&[f32]; 16] = std::array::from_fn(|q| &du[(q * out_ch + o) * in_ch..][..in_ch]);
        for i0 in (0..in_ch).step_by(L) {
            let lb = L.min(in_ch - i0);
            for (l, g) in out[..lb].iter_mut().enumerate() {
                *g = grad_one(&std::array::from_fn(|q| rows[q][i0 + l]));
            }
            for (d, g) in dst[i0 * 9..][..lb * 9].chunks_exact_mut(9).zip(&out) {
                d.copy_from_slice(g);
            }
        }
    }
}

/// `G^T m G` of one kernel's transformed gradient `m` (16 values `a * 4 + b`): the gradient of
/// its 3x3 kernel, row-major. The adjoint of [`transform_one`], written out the same way.
#[inline]
fn grad_one(m: &[f32; 16]) -> [f32; 9] {
    #[inline(always)]
    fn gt_times(m0: f32, m1: f32, m2: f32, m3: f32) -> [f32; 3] {
        let (sum, diff) = (0.5 * (m1 + m2), 0.5 * (m1 - m2));
        [m0 + sum, diff, sum + m3]
    }
    // G^T m: G^T times each column of m
    let c: [[f32; 3]; 4] = std::array::from_fn(|b| gt_times(m[b], m[4 + b], m[8 + b], m[12 + b]));
    let mut g = [0.0f32; 9];
    for ky in 0..3 {
        // row ky of (G^T m) G is G^T times row ky of G^T m
        g[ky * 3..ky * 3 + 3].copy_from_slice(&gt_times(c[0][ky], c[1][ky], c[2][ky], c[3][ky]));
    }
    g
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
/// in and out swapped) from `u` of the forward kernel (`[16][out][in]`), without going back
/// to the kernel: reversing a 3x3 kernel swaps rows 0 and 3 of `G g`, so plane `(a, b)` of the
/// result is plane `(p(a), p(b))` of `u` transposed, with `p` swapping 0 and 3. `in_ch` and
/// `out_ch` are the forward kernel's.
pub fn flip_transformed(u: &[f32], in_ch: usize, out_ch: usize) -> Vec<f32> {
    super::layout::transpose_planes(u, 16, out_ch, in_ch, flipped_plane)
}

/// The plane of the forward's transformed kernel that plane `xi` of the flipped kernel's is
/// (transposed): `(a, b)` comes from `(p(a), p(b))`, `p` swapping 0 and 3.
pub(super) fn flipped_plane(xi: usize) -> usize {
    let p = |a: usize| match a {
        0 => 3,
        3 => 0,
        a => a,
    };
    p(xi / 4) * 4 + p(xi % 4)
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
    /// Plane `xi` of a transformed kernel `u` as the `cin x cout` right-hand matrix of its
    /// product.
    fn kernel_plane(u: &[f32], xi: usize, cin: usize, cout: usize) -> MatRef<'_>;
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
    /// [`transform_kernel`]'s planes are `out x in`: the product reads them transposed.
    fn kernel_plane(u: &[f32], xi: usize, cin: usize, cout: usize) -> MatRef<'_> {
        MatRef::transposed(&u[xi * cin * cout..(xi + 1) * cin * cout], cin)
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

/// [`forward`] with scheme `S`, `u` laid out as `S::kernel_plane` reads it, an image at a time.
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
            S::kernel_plane(u, xi, cin, cout),
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

    /// `grad_one` is `G^T m G` (to rounding: the matrix product sums in another order) and
    /// the adjoint of the transform: `<G g G^T, m> = <g, G^T m G>`.
    #[test]
    fn written_out_gradient_is_the_adjoint_of_the_transform() {
        for seed in 0..50 {
            let m: [f32; 16] = std::array::from_fn(|i| ((i * 5 + seed) as f32 * 0.731).sin() * 2.0);
            let g: Vec<f32> = (0..9)
                .map(|i| ((i * 3 + seed) as f32 * 0.37).cos())
                .collect();
            let got = grad_one(&m);
            for ky in 0..3 {
                for kx in 0..3 {
                    let want: f32 = (0..16).map(|q| G[q / 4][ky] * m[q] * G[q % 4][kx]).sum();
                    assert!((got[ky * 3 + kx] - want).abs() < 1e-5, "{got:?}");
                }
            }
            let lhs: f64 = transform_one(&g)
                .iter()
                .zip(&m)
                .map(|(a, b)| (a * b) as f64)
                .sum();
            let rhs: f64 = g.iter().zip(&got).map(|(a, b)| (a * b) as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-5 * (1.0 + lhs.abs()),
                "{lhs} vs {rhs}"
            );
        }
    }

    /// Plane `q`, row `o`, column `i` of the transform is value `q` of kernel (o, i)'s.
    #[test]
    fn transform_lays_each_plane_out_by_output_then_input() {
        let (o, i) = (21, 19);
        let w: Vec<f32> = (0..o * i * 9).map(|v| (v as f32 * 0.37).sin()).collect();
        let u = transform_kernel(&w, o, i);
        for (oc, ic) in [(0, 0), (20, 18), (16, 3), (5, 17)] {
            let want = transform_one(&w[(oc * i + ic) * 9..][..9]);
            for (q, v) in want.iter().enumerate() {
                assert_eq!(
                    u[(q * o + oc) * i + ic],
                    *v,
                    "kernel ({oc}, {ic}), value {q}"
                );
            }
        }
        // refilling a used buffer overwrites all of it
        let mut again = vec![f32::NAN; u.len()];
        transform_kernel_into(&w, o, i, &mut again);
        assert_eq!(again, u);
    }

    /// One pass (gradient, update, transform) is the three passes it replaces, to the bit.
    #[test]
    fn update_kernel_is_gradient_then_update_then_transform() {
        let (o, i) = (37, 21);
        let du: Vec<f32> = (0..16 * o * i).map(|v| (v as f32 * 0.113).sin()).collect();
        let w: Vec<f32> = (0..9 * o * i).map(|v| (v as f32 * 0.29).cos()).collect();
        let state: Vec<f32> = (0..9 * o * i).map(|v| (v as f32 * 0.07).sin()).collect();
        let step = |g: &[f32], [w, s]: [&mut [f32]; 2]| {
            for ((w, s), g) in w.iter_mut().zip(s.iter_mut()).zip(g) {
                *s = 0.5 * *s + g;
                *w -= 0.1 * *s;
            }
        };
        let (mut w1, mut s1, mut u1) = (w.clone(), state.clone(), vec![f32::NAN; 16 * o * i]);
        update_kernel(&du, o, i, [&mut w1, &mut s1], &mut u1, step);
        let (mut w2, mut s2) = (w, state);
        step(&kernel_grad_from_transformed(&du, o, i), [&mut w2, &mut s2]);
        assert_eq!(w1, w2);
        assert_eq!(s1, s2);
        assert_eq!(u1, transform_kernel(&w2, o, i));
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
