//! Moving between burn's layouts (NCHW activations, OIHW kernels) and the kernels' own
//! (NHWC activations, kernels as a `[9 * in, out]` matrix).

use rayon::prelude::*;

/// NCHW -> NHWC: each image's `[c][h * w]` transposed, in cache-sized blocks.
pub fn nchw_to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    transpose_planes(x, n, c, h * w, |img| img)
}

/// NHWC -> NCHW: each image's `[h * w][c]` transposed, in cache-sized blocks.
pub fn nhwc_to_nchw(x: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    transpose_planes(x, n, h * w, c, |img| img)
}

/// OIHW 3x3 kernel -> `[9 * in, out]`, row `(dy * 3 + dx) * in + i`: the right-hand matrix
/// of the forward convolution.
pub fn pack_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    per_kernel_planes(w, out_ch, in_ch, |g: &[f32]| {
        std::array::from_fn::<f32, 9, _>(|t| g[t])
    })
}

/// `P` planes `[P][in][out]` from an OIHW 3x3 kernel: element `(q, i, o)` is value `q` of
/// `values(kernel o <- i)` (its 9 taps, row-major). Sixteen input channels a job; within a
/// job, sixteen output channels at a time go through a small buffer and are written out as
/// whole 64-byte runs (the planes lie a power of two apart, so writing them a value at a time
/// thrashes the cache). Packing (`P` = 9) and Winograd's transform (`P` = 16) both use it.
pub fn per_kernel_planes<const P: usize>(
    w: &[f32],
    out_ch: usize,
    in_ch: usize,
    values: impl Fn(&[f32]) -> [f32; P] + Sync,
) -> Vec<f32> {
    const IB: usize = 16;
    const OB: usize = 16;
    let mut planes_out = vec![0.0f32; P * in_ch * out_ch];
    if planes_out.is_empty() {
        return planes_out;
    }
    split_planes(&mut planes_out, in_ch, out_ch, IB)
        .into_par_iter()
        .enumerate()
        .for_each(|(k, mut planes)| {
            let ib = planes[0].len() / out_ch;
            let mut block = [[0.0f32; OB]; P];
            for o0 in (0..out_ch).step_by(OB) {
                let ob = OB.min(out_ch - o0);
                for di in 0..ib {
                    let i = k * IB + di;
                    for oo in 0..ob {
                        let g = &w[((o0 + oo) * in_ch + i) * 9..][..9];
                        for (q, v) in values(g).into_iter().enumerate() {
                            block[q][oo] = v;
                        }
                    }
                    for (plane, row) in planes.iter_mut().zip(&block) {
                        plane[di * out_ch + o0..][..ob].copy_from_slice(&row[..ob]);
                    }
                }
            }
        });
    planes_out
}

/// `P` planes `[P][out][in]` from an OIHW 3x3 kernel into `planes_out`, whose old values are
/// all overwritten: element `(q, o, i)` is value `q` of `values(kernel o <- i)` (its 9 taps,
/// row-major). Output channel `o`'s kernels, contiguous in OIHW, become row `o` of every
/// plane ([`fill_kernel_rows`]), so each job (sixteen output channels) reads one run and writes
/// one run per plane.
pub fn per_kernel_rows_into<const P: usize>(
    w: &[f32],
    out_ch: usize,
    in_ch: usize,
    values: impl Fn(&[f32]) -> [f32; P] + Sync,
    planes_out: &mut [f32],
) {
    const OB: usize = 16;
    assert!(
        w.len() == 9 * in_ch * out_ch && planes_out.len() == P * in_ch * out_ch,
        "kernel planes do not match the kernel's shape"
    );
    if planes_out.is_empty() {
        return;
    }
    split_planes(planes_out, out_ch, in_ch, OB)
        .into_par_iter()
        .enumerate()
        .for_each(|(k, mut planes)| {
            let rows = planes[0].len() / in_ch;
            let kernels = &w[k * OB * in_ch * 9..][..rows * in_ch * 9];
            fill_kernel_rows(kernels, in_ch, &mut planes, &values);
        });
}

/// Writes `values` of a block of output channels' kernels (`kernels`, OIHW: `in_ch` kernels of
/// 9 taps each per output channel) into `planes` (each the block's rows of `in_ch`): output
/// channel `r` of the block becomes row `r` of every plane. Sixteen kernels at a time are
/// gathered tap-major, so that `values` runs on them side by side (the loop over them
/// vectorises), and each plane gets them as one 64-byte run.
pub fn fill_kernel_rows<const P: usize>(
    kernels: &[f32],
    in_ch: usize,
    planes: &mut [&mut [f32]],
    values: &impl Fn(&[f32]) -> [f32; P],
) {
    for (r, row) in kernels.chunks_exact(in_ch * 9).enumerate() {
        fill_kernel_row(row, r, planes, values);
    }
}

/// [`fill_kernel_rows`] for output channel `r`, whose kernels are `kernels`.
fn fill_kernel_row<const P: usize>(
    kernels: &[f32],
    r: usize,
    planes: &mut [&mut [f32]],
    values: &impl Fn(&[f32]) -> [f32; P],
) {
    const L: usize = 16;
    let in_ch = kernels.len() / 9;
    let mut taps = [[0.0f32; L]; 9];
    let mut out = [[0.0f32; L]; P];
    for i0 in (0..in_ch).step_by(L) {
        let lb = L.min(in_ch - i0);
        for (l, g) in kernels[i0 * 9..][..lb * 9].chunks_exact(9).enumerate() {
            for (t, &v) in g.iter().enumerate() {
                taps[t][l] = v;
            }
        }
        for l in 0..L {
            let g: [f32; 9] = std::array::from_fn(|t| taps[t][l]);
            for (q, v) in values(&g).into_iter().enumerate() {
                out[q][l] = v;
            }
        }
        for (plane, values) in planes.iter_mut().zip(&out) {
            let dst = &mut plane[r * in_ch + i0..][..lb];
            // a whole run as one fixed-size copy (vector stores, not a call)
            match <&mut [f32; L]>::try_from(&mut *dst) {
                Ok(run) => *run = *values,
                Err(_) => dst.copy_from_slice(&values[..lb]),
            }
        }
    }
}

/// OIHW 3x3 kernel -> the OIHW kernel of the input-gradient convolution (`in` outputs,
/// `out` inputs): turned 180 degrees with in and out swapped.
pub fn flip_kernel(w: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    repack(w.len(), 9, |row, t| {
        let (i, o) = (row / out_ch, row % out_ch);
        w[(o * in_ch + i) * 9 + 8 - t]
    })
}

/// `[9 * in, out]` -> OIHW (for gradients of the kernel), sixteen output channels a job.
pub fn unpack_kernel(p: &[f32], out_ch: usize, in_ch: usize) -> Vec<f32> {
    const OB: usize = 16;
    let mut w = vec![0.0; p.len()];
    w.par_chunks_mut((OB * in_ch * 9).max(1))
        .enumerate()
        .for_each(|(k, dst)| {
            let (o0, ob) = (k * OB, dst.len() / (in_ch * 9));
            for tap in 0..9 {
                for i in 0..in_ch {
                    let src = &p[(tap * in_ch + i) * out_ch + o0..][..ob];
                    for (d, &v) in src.iter().enumerate() {
                        dst[(d * in_ch + i) * 9 + tap] = v;
                    }
                }
            }
        });
    w
}

/// `planes` planes of `rows x cols` -> planes of `cols x rows`: plane `q` of the result is
/// the transpose of plane `from(q)`. Sixteen output rows a job.
pub fn transpose_planes(
    src: &[f32],
    planes: usize,
    rows: usize,
    cols: usize,
    from: impl Fn(usize) -> usize + Sync,
) -> Vec<f32> {
    const RB: usize = 16;
    assert_eq!(
        src.len(),
        planes * rows * cols,
        "planes do not match their shape"
    );
    let mut dst = vec![0.0; src.len()];
    if dst.is_empty() {
        return dst;
    }
    dst.par_chunks_mut(rows * cols)
        .enumerate()
        .for_each(|(q, plane)| {
            let s = &src[from(q) * rows * cols..][..rows * cols];
            plane
                .par_chunks_mut(RB * rows)
                .enumerate()
                .for_each(|(k, block)| {
                    let (c0, cb) = (k * RB, block.len() / rows);
                    for r in 0..rows {
                        for (d, &v) in s[r * cols + c0..][..cb].iter().enumerate() {
                            block[d * rows + r] = v;
                        }
                    }
                });
        });
    dst
}

/// Splits a plane-major buffer (planes of `rows x cols`, one after another) into parts of
/// `part_rows` rows: part `k` holds rows `k * part_rows..` of every plane, so that parts can
/// be filled in parallel.
pub fn split_planes(
    buf: &mut [f32],
    rows: usize,
    cols: usize,
    part_rows: usize,
) -> Vec<Vec<&mut [f32]>> {
    let part_rows = part_rows.max(1);
    let mut parts: Vec<Vec<&mut [f32]>> =
        (0..rows.div_ceil(part_rows)).map(|_| Vec::new()).collect();
    if rows * cols == 0 {
        return parts;
    }
    for plane in buf.chunks_mut(rows * cols) {
        for (k, part) in plane.chunks_mut(part_rows * cols).enumerate() {
            parts[k].push(part);
        }
    }
    parts
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
        // a kernel wider than one job of pack/unpack, against the element-wise definition
        let (o, i) = (37, 21);
        let wide: Vec<f32> = (0..o * i * 9).map(|v| v as f32).collect();
        let p = pack_kernel(&wide, o, i);
        for (oc, ic, t) in [(0, 0, 0), (36, 20, 8), (17, 16, 4), (5, 3, 7)] {
            assert_eq!(p[(t * i + ic) * o + oc], wide[(oc * i + ic) * 9 + t]);
        }
        assert_eq!(unpack_kernel(&p, o, i), wide);
        // tap (0,0) of out 1 / in 2 becomes tap (2,2) of the flipped kernel, in and out swapped
        let f = flip_kernel(&k, 4, 3);
        assert_eq!(f[(2 * 4 + 1) * 9 + 8], k[(3 + 2) * 9]);
        // the flipped packed kernel is the packed kernel's tap planes transposed, in reverse
        let packed_flip = transpose_planes(&pack_kernel(&k, 4, 3), 9, 3, 4, |t| 8 - t);
        assert_eq!(packed_flip, pack_kernel(&f, 3, 4));
    }
}
