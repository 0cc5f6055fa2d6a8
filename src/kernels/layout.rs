//! Moving between burn's layouts (NCHW activations, OIHW kernels) and the kernels' own
//! (NHWC activations, kernels as a `[9 * in, out]` matrix).

use rayon::prelude::*;

/// NCHW -> NHWC.
pub fn nchw_to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut((h * w * c).max(1))
        .zip(x.par_chunks((c * h * w).max(1)))
        .take(n)
        .for_each(|(dst, src)| {
            for ci in 0..c {
                let plane = &src[ci * h * w..(ci + 1) * h * w];
                for (p, &v) in plane.iter().enumerate() {
                    dst[p * c + ci] = v;
                }
            }
        });
    out
}

/// NHWC -> NCHW.
pub fn nhwc_to_nchw(x: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    out.par_chunks_mut((c * h * w).max(1))
        .zip(x.par_chunks((h * w * c).max(1)))
        .take(n)
        .for_each(|(dst, src)| {
            for (p, px) in src.chunks_exact(c).enumerate() {
                for (ci, &v) in px.iter().enumerate() {
                    dst[ci * h * w + p] = v;
                }
            }
        });
    out
}

/// OIHW 3x3 kernel -> `[9 * in, out]`, row `(dy * 3 + dx) * in + i`: the right-hand matrix
/// of the forward convolution.
pub fn pack_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    repack(w.len(), out_ch, |row, o| {
        let (t, i) = (row / in_ch, row % in_ch);
        w[(o * in_ch + i) * 9 + t]
    })
}

/// OIHW 3x3 kernel -> the right-hand matrix `[9 * out, in]` of the input-gradient
/// convolution: the kernel turned 180 degrees with in and out swapped.
pub fn pack_kernel_flipped(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    repack(w.len(), in_ch, |row, i| {
        let (t, o) = (row / out_ch, row % out_ch);
        w[(o * in_ch + i) * 9 + 8 - t]
    })
}

/// `[9 * in, out]` -> OIHW (for gradients of the kernel).
pub fn unpack_kernel(p: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    repack(p.len(), in_ch * 9, |o, col| {
        let (i, t) = (col / 9, col % 9);
        p[(t * in_ch + i) * out_ch + o]
    })
}

/// A `len`-long matrix with rows of `cols`, element (row, col) from `at`, rows in parallel.
fn repack(len: usize, cols: usize, at: impl Fn(usize, usize) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0; len];
    out.par_chunks_mut(cols.max(1))
        .enumerate()
        .for_each(|(row, dst)| {
            dst.iter_mut()
                .enumerate()
                .for_each(|(col, v)| *v = at(row, col))
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_round_trip() {
        let dims = [2, 3, 4, 5];
        let x: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let y = nchw_to_nhwc(&x, dims);
        // element (n=1, c=2, h=3, w=4) of NCHW sits at ((1*4+3)*5+4)*3+2 in NHWC
        assert_eq!(y[((4 + 3) * 5 + 4) * 3 + 2], x[((3 + 2) * 4 + 3) * 5 + 4]);
        assert_eq!(nhwc_to_nchw(&y, [2, 4, 5, 3]), x);
        let k: Vec<f32> = (0..4 * 3 * 9).map(|i| i as f32).collect();
        assert_eq!(unpack_kernel(&pack_kernel(&k, 4, 3), 4, 3), k);
        let f = pack_kernel_flipped(&k, 4, 3);
        // tap (0,0) of out 1 / in 2 becomes tap (2,2) of the flipped kernel, row in 'out' order
        assert_eq!(f[(8 * 4 + 1) * 3 + 2], k[(3 + 2) * 9]);
    }
}
