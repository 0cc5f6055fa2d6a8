//! 3x3 'same' convolution by Winograd's F(4x4, 3x3) on NHWC, for the inference forward of
//! large images (blocks 1-4 at 218 x 178): each 4x4 block of output pixels comes from a 6x6
//! input tile through 36 products per channel pair instead of 144, 2.25 products per output
//! where F(2x2, 3x3) needs 4 and im2col 9. The image-at-a-time driver is `winograd`'s
//! ([`super::winograd::forward_with`]); this module holds the transforms. The kernel transform
//! has the non-dyadic 1/6 and 1/24 of `G`, so it is computed in f64 and rounded once; the
//! input and output transforms have small integer coefficients. No backward pass uses it: the
//! trainable layers keep F(2x2, 3x3), whose flipped kernel comes from the transformed one.

use super::gemm::MatRef;
use super::shape::ConvShape;
use super::winograd::{Scheme, fills_products_with, forward_with, gather_tile, rows};

/// Winograd's kernel matrix of F(4x4, 3x3).
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// The transformed kernel `U = G g G^T`, laid out `[36][in][out]`, from an OIHW 3x3 kernel.
pub fn transform_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    super::layout::per_kernel_planes(w, out_ch, in_ch, transform_one)
}

/// `G g G^T` of one 3x3 kernel `g` (row-major), as 36 values `a * 6 + b`, in f64.
fn transform_one(g: &[f32]) -> [f32; 36] {
    let mut gg = [[0.0f64; 3]; 6];
    for (a, row) in gg.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| G[a][k] * g[k * 3 + j] as f64).sum();
        }
    }
    let mut u = [0.0f32; 36];
    for a in 0..6 {
        for b in 0..6 {
            u[a * 6 + b] = (0..3).map(|j| gg[a][j] * G[b][j]).sum::<f64>() as f32;
        }
    }
    u
}

/// Whether the inference forward of shape `s` runs on F(4x4, 3x3): more than 3 channels in
/// (the first layer stays on im2col) and an image with tiles enough to fill the products.
pub fn suits(s: ConvShape) -> bool {
    s.cin > 3 && fills_products_with::<F4>(s)
}

/// `y = act(conv(x) + bias)` with `u` from [`transform_kernel`]; same contract as
/// `conv3x3::forward`.
pub fn forward(x: &[f32], s: ConvShape, u: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    forward_with::<F4>(x, s, u, bias, relu)
}

/// F(4x4, 3x3).
pub(super) struct F4;

impl Scheme for F4 {
    const M: usize = 4;
    const PLANES: usize = 36;

    fn input_tile(x: &[f32], h: usize, w: usize, c: usize, ty: usize, tx: usize, d: &mut [f32]) {
        gather_tile::<6>(x, h, w, c, (4 * ty, 4 * tx), d);
        // d <- B^T d B, in place: first down each column, then along each row
        for b in 0..6 {
            bt6(rows(d, c, std::array::from_fn(|a| a * 6 + b)));
        }
        for a in 0..6 {
            bt6(rows(d, c, std::array::from_fn(|b| a * 6 + b)));
        }
    }

    fn output_tile<'m>(
        plane: impl Fn(usize) -> &'m [f32],
        c: usize,
        z: &mut Vec<f32>,
        mut put: impl FnMut(usize, usize, &[f32]),
    ) {
        z.resize(7 * c, 0.0);
        let (row, px) = z.split_at_mut(6 * c);
        for r in 0..4 {
            // row r of A^T M, one column b at a time
            for (b, dst) in row.chunks_exact_mut(c).enumerate() {
                at6(r, std::array::from_fn(|a| plane(a * 6 + b)), dst);
            }
            let cols: [&[f32]; 6] = std::array::from_fn(|b| &row[b * c..(b + 1) * c]);
            for col in 0..4 {
                at6(col, cols, px);
                put(r, col, px);
            }
        }
    }
    /// This module's [`transform_kernel`] lays its planes out `in x out`.
    fn kernel_plane(u: &[f32], xi: usize, cin: usize, cout: usize) -> MatRef<'_> {
        MatRef::rows(&u[xi * cin * cout..(xi + 1) * cin * cout], cout)
    }
}

/// Row `r` of `A^T` (F(4, 3)) applied to six rows: `out = sum over a of A^T[r][a] m[a]`.
#[inline]
fn at6(r: usize, m: [&[f32]; 6], out: &mut [f32]) {
    let [m0, m1, m2, m3, m4, m5] = m;
    let it = out.iter_mut().enumerate();
    match r {
        0 => it.for_each(|(k, o)| *o = (m0[k] + m1[k]) + (m2[k] + m3[k]) + m4[k]),
        1 => it.for_each(|(k, o)| *o = (m1[k] - m2[k]) + 2.0 * (m3[k] - m4[k])),
        2 => it.for_each(|(k, o)| *o = (m1[k] + m2[k]) + 4.0 * (m3[k] + m4[k])),
        _ => it.for_each(|(k, o)| *o = (m1[k] - m2[k]) + 8.0 * (m3[k] - m4[k]) + m5[k]),
    }
}

/// `B^T` of F(4, 3) applied to six rows in place, element-wise.
fn bt6([r0, r1, r2, r3, r4, r5]: [&mut [f32]; 6]) {
    for k in 0..r0.len() {
        let (d0, d1, d2, d3, d4, d5) = (r0[k], r1[k], r2[k], r3[k], r4[k], r5[k]);
        r0[k] = 4.0 * d0 - 5.0 * d2 + d4;
        r1[k] = -4.0 * (d1 + d2) + (d3 + d4);
        r2[k] = 4.0 * (d1 - d2) + (d4 - d3);
        r3[k] = 2.0 * (d3 - d1) + (d4 - d2);
        r4[k] = 2.0 * (d1 - d3) + (d4 - d2);
        r5[k] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B^T, A^T and G of F(4, 3) as matrices: the 1-D convolution of a 6-long signal with a
    /// 3-tap kernel is A^T [(G g) * (B^T d)], checked against the definition.
    #[test]
    fn one_dimensional_transforms_compute_the_convolution() {
        let g = [0.3f64, -1.2, 0.7];
        let d = [1.0f64, -2.0, 0.5, 3.0, -1.5, 2.5];
        let gg: Vec<f64> = (0..6)
            .map(|a| (0..3).map(|k| G[a][k] * g[k]).sum())
            .collect();
        let mut bd: Vec<[f32; 1]> = d.iter().map(|&v| [v as f32]).collect();
        {
            let mut it = bd.iter_mut();
            let rows: [&mut [f32]; 6] = std::array::from_fn(|_| &mut it.next().unwrap()[..]);
            bt6(rows);
        }
        let prod: Vec<[f32; 1]> = (0..6).map(|a| [(gg[a] * bd[a][0] as f64) as f32]).collect();
        for r in 0..4 {
            let mut out = [0.0f32];
            at6(r, std::array::from_fn(|a| &prod[a][..]), &mut out);
            let want: f64 = (0..3).map(|k| g[k] * d[r + k]).sum();
            assert!(
                (out[0] as f64 - want).abs() < 1e-5,
                "{r}: {} vs {want}",
                out[0]
            );
        }
    }

    #[test]
    fn matches_im2col_convolution_on_odd_and_even_sizes() {
        let s = |n, h, w, cin, cout| ConvShape { n, h, w, cin, cout };
        // F(4x4)'s larger transform coefficients cost accuracy: up to 1.6e-5 of the largest
        // output here (F(2x2): 1e-6); through VGG16's blocks 1-4 the features differ from a
        // direct convolution by 2e-6 (relative L2; F(2x2): 1e-6)
        crate::kernels::winograd::check_against_im2col(
            &[
                s(2, 7, 9, 5, 6),
                s(1, 1, 1, 2, 2),
                s(2, 54, 44, 16, 24),
                s(1, 13, 6, 64, 8),
            ],
            transform_kernel,
            forward,
            |g, e, scale| (g - e).abs() <= 5e-5 * scale,
        );
    }
}
