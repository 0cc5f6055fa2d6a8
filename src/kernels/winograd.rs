//! 3x3 'same' convolution by Winograd's F(2x2, 3x3) on NHWC: each 2x2 block of output pixels
//! comes from a 4x4 input tile through 16 products per channel pair instead of 36, so the
//! matrix products do 2.25x less work than im2col. The 16 products of a group of tiles are 16
//! `gemm` calls (tiles x in) . (in x out); input and output transforms are additions only.
//! Used for the wide layers (blocks 1-4) where the tiles fill the products; the narrow
//! block5 and the 3-channel first layer stay on im2col (see `conv3x3::Conv3x3`).

use rayon::prelude::*;

use super::conv3x3::ConvShape;
use super::gemm::{MatRef, Threads, matmul};

/// The transformed kernel `U = G g G^T`, laid out `[16][in][out]`, from an OIHW 3x3 kernel.
pub fn transform_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    const G: [[f32; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    // each 3x3 kernel is transformed on its own, then the 16 values of every kernel are
    // scattered into U's [16][in][out] layout, one row of U per job
    let per_in: Vec<[f32; 16]> = (0..out_ch * in_ch)
        .into_par_iter()
        .map(|oi| {
            let g = &w[oi * 9..][..9];
            let mut t = [[0.0f32; 3]; 4];
            for (a, row) in t.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| G[a][k] * g[k * 3 + j]).sum();
                }
            }
            let mut u = [0.0f32; 16];
            for a in 0..4 {
                for b in 0..4 {
                    u[a * 4 + b] = (0..3).map(|j| t[a][j] * G[b][j]).sum();
                }
            }
            u
        })
        .collect();
    let mut u = vec![0.0f32; 16 * in_ch * out_ch];
    u.par_chunks_mut(out_ch.max(1))
        .enumerate()
        .for_each(|(row, dst)| {
            let (xi, i) = (row / in_ch, row % in_ch);
            for (o, v) in dst.iter_mut().enumerate() {
                *v = per_in[o * in_ch + i][xi];
            }
        });
    u
}

/// Tiles per group: the 16 transformed planes of a group take about 2 MB.
fn group_tiles(channels: usize) -> usize {
    ((1usize << 19) / (16 * channels.max(1))).max(16)
}

/// `y = act(conv(x) + bias)` with `u` from [`transform_kernel`]; same contract as
/// `conv3x3::forward`.
pub fn forward(x: &[f32], s: ConvShape, u: &[f32], bias: Option<&[f32]>, relu: bool) -> Vec<f32> {
    assert_eq!(
        x.len(),
        s.pixels() * s.cin,
        "conv input does not match its shape"
    );
    assert_eq!(
        u.len(),
        16 * s.cin * s.cout,
        "winograd kernel does not match its shape"
    );
    let (h, w, cin, cout) = (s.h, s.w, s.cin, s.cout);
    let mut y = vec![0.0f32; s.pixels() * cout];
    if y.is_empty() {
        return y;
    }
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let rows_per_job = (group_tiles(cin.max(cout)) / tw).clamp(1, th);
    y.par_chunks_mut(h * w * cout)
        .enumerate()
        .for_each(|(img, y_img)| {
            let x_img = &x[img * h * w * cin..(img + 1) * h * w * cin];
            y_img
                .par_chunks_mut(2 * rows_per_job * w * cout)
                .enumerate()
                .for_each_init(Scratch::default, |scratch, (job, dst)| {
                    let ty0 = job * rows_per_job;
                    let ty1 = (ty0 + rows_per_job).min(th);
                    tile_rows(x_img, s, u, bias, relu, ty0..ty1, dst, scratch);
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

/// Output tile rows `tiles` of one image into `dst` (its output rows from `2 * tiles.start`).
#[allow(clippy::too_many_arguments)]
fn tile_rows(
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
    let tw = w.div_ceil(2);
    let count = tiles.len() * tw;
    sc.v.resize(16 * count * cin, 0.0);
    sc.m.resize(16 * count * cout, 0.0);
    sc.d.resize(16 * cin.max(cout), 0.0);
    // input transform: V = B^T d B for every tile, into 16 planes [count x cin]
    for (t, (ty, tx)) in tiles
        .clone()
        .flat_map(|ty| (0..tw).map(move |tx| (ty, tx)))
        .enumerate()
    {
        let d = &mut sc.d[..16 * cin];
        for a in 0..4 {
            let iy = (2 * ty + a).checked_sub(1).filter(|&iy| iy < h);
            for b in 0..4 {
                let ix = (2 * tx + b).checked_sub(1).filter(|&ix| ix < w);
                let seg = &mut d[(a * 4 + b) * cin..(a * 4 + b + 1) * cin];
                match (iy, ix) {
                    (Some(iy), Some(ix)) => seg.copy_from_slice(&x[(iy * w + ix) * cin..][..cin]),
                    _ => seg.fill(0.0),
                }
            }
        }
        // d <- B^T d B, in place: first down each column, then along each row
        for b in 0..4 {
            let [r0, r1, r2, r3] = rows4(d, cin, [b, 4 + b, 8 + b, 12 + b]);
            bt4(r0, r1, r2, r3);
        }
        for a in 0..4 {
            let [r0, r1, r2, r3] = rows4(d, cin, [4 * a, 4 * a + 1, 4 * a + 2, 4 * a + 3]);
            bt4(r0, r1, r2, r3);
        }
        for (xi, seg) in d.chunks_exact(cin).enumerate() {
            sc.v[(xi * count + t) * cin..][..cin].copy_from_slice(seg);
        }
    }
    for xi in 0..16 {
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
    // output transform: Y = A^T M A (2 x 2), + bias, ReLU
    sc.d.resize(8 * cout, 0.0);
    let rows_here = dst.len() / (w * cout);
    for (t, (ty, tx)) in tiles
        .clone()
        .flat_map(|ty| (0..tw).map(move |tx| (ty, tx)))
        .enumerate()
    {
        let plane = |xi: usize| &sc.m[(xi * count + t) * cout..][..cout];
        // z[r][b] = row r of A^T M: r = 0 -> m0b + m1b + m2b, r = 1 -> m1b - m2b - m3b
        for b in 0..4 {
            let (m0, m1, m2, m3) = (plane(b), plane(4 + b), plane(8 + b), plane(12 + b));
            let (z0, z1) = sc.d.split_at_mut(4 * cout);
            let z0 = &mut z0[b * cout..][..cout];
            let z1 = &mut z1[b * cout..][..cout];
            for (k, (z0, z1)) in z0.iter_mut().zip(z1.iter_mut()).enumerate() {
                *z0 = m0[k] + m1[k] + m2[k];
                *z1 = m1[k] - m2[k] - m3[k];
            }
        }
        for r in 0..2 {
            let oy = 2 * (ty - tiles.start) + r;
            if oy >= rows_here {
                continue;
            }
            let z = &sc.d[r * 4 * cout..][..4 * cout];
            let (z0, z1, z2, z3) = (
                &z[..cout],
                &z[cout..2 * cout],
                &z[2 * cout..3 * cout],
                &z[3 * cout..],
            );
            for cc in 0..2 {
                let ox = 2 * tx + cc;
                if ox >= w {
                    continue;
                }
                let out = &mut dst[(oy * w + ox) * cout..][..cout];
                if cc == 0 {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = z0[k] + z1[k] + z2[k];
                    }
                } else {
                    for (k, o) in out.iter_mut().enumerate() {
                        *o = z1[k] - z2[k] - z3[k];
                    }
                }
                if let Some(b) = bias {
                    out.iter_mut().zip(b).for_each(|(o, b)| *o += b);
                }
                if relu {
                    out.iter_mut().for_each(|o| *o = o.max(0.0));
                }
            }
        }
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

/// Four disjoint `len`-long rows of `buf`, by row index (indices must differ).
fn rows4<'a>(buf: &'a mut [f32], len: usize, idx: [usize; 4]) -> [&'a mut [f32]; 4] {
    let mut slots: [Option<&'a mut [f32]>; 16] = Default::default();
    for (k, chunk) in buf.chunks_exact_mut(len).enumerate().take(16) {
        slots[k] = Some(chunk);
    }
    idx.map(|i| slots[i].take().expect("rows4 needs 4 distinct rows"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv3x3;
    use crate::kernels::layout::pack_kernel;

    #[test]
    fn matches_im2col_convolution_on_odd_and_even_sizes() {
        for s in [
            ConvShape {
                n: 2,
                h: 7,
                w: 9,
                cin: 5,
                cout: 6,
            },
            ConvShape {
                n: 3,
                h: 8,
                w: 4,
                cin: 8,
                cout: 3,
            },
            ConvShape {
                n: 1,
                h: 1,
                w: 1,
                cin: 2,
                cout: 2,
            },
            ConvShape {
                n: 2,
                h: 27,
                w: 22,
                cin: 16,
                cout: 24,
            },
        ] {
            let x: Vec<f32> = (0..s.pixels() * s.cin)
                .map(|i| (i as f32 * 0.613).sin())
                .collect();
            let wt: Vec<f32> = (0..s.cout * s.cin * 9)
                .map(|i| (i as f32 * 0.271).cos() * 0.3)
                .collect();
            let b: Vec<f32> = (0..s.cout).map(|i| i as f32 * 0.01 - 0.02).collect();
            let want = conv3x3::forward(&x, s, &pack_kernel(&wt, s.cout, s.cin), Some(&b), true);
            let got = forward(&x, s, &transform_kernel(&wt, s.cout, s.cin), Some(&b), true);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() < 1e-5 * (1.0 + e.abs()), "{s:?}: {g} vs {e}");
            }
        }
    }
}
