//! 2x2 max-pool, stride 2, floor, on NHWC; the backward pass routes each gradient to the
//! first maximum of its window (row-major), as PyTorch and TensorFlow do.

use rayon::prelude::*;

/// `[n, h, w, c]` -> `[n, h / 2, w / 2, c]`.
pub fn max_pool2(x: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0.0; n * oh * ow * c];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(ow * c)
        .enumerate()
        .for_each(|(row, dst)| {
            let (img, y) = (row / oh, row % oh);
            let top = (img * h + 2 * y) * w * c;
            let bottom = top + w * c;
            for xo in 0..ow {
                let (a, b) = (top + 2 * xo * c, bottom + 2 * xo * c);
                for ch in 0..c {
                    dst[xo * c + ch] = x[a + ch]
                        .max(x[a + c + ch])
                        .max(x[b + ch])
                        .max(x[b + c + ch]);
                }
            }
        });
    out
}

/// Gradient of [`max_pool2`]'s input, from its input `x` and its output's gradient `dy`.
pub fn max_pool2_backward(x: &[f32], dy: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    debug_assert_eq!(x.len(), n * h * w * c);
    let mut dx = vec![0.0; x.len()];
    if oh == 0 || ow == 0 {
        return dx;
    }
    // One job per pair of input rows: they are exactly what one output row reads and writes.
    dx.par_chunks_mut(h * w * c)
        .enumerate()
        .for_each(|(img, dimg)| {
            dimg.par_chunks_mut(2 * w * c)
                .enumerate()
                .take(oh)
                .for_each(|(y, dst)| {
                    let src = &x[(img * h + 2 * y) * w * c..][..2 * w * c];
                    let g = &dy[(img * oh + y) * ow * c..][..ow * c];
                    for xo in 0..ow {
                        for ch in 0..c {
                            let a = 2 * xo * c + ch;
                            let cand = [a, a + c, w * c + a, w * c + a + c];
                            let mut best = cand[0];
                            for &k in &cand[1..] {
                                if src[k] > src[best] {
                                    best = k;
                                }
                            }
                            dst[best] += g[xo * c + ch];
                        }
                    }
                });
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_floor_and_routes_gradient_to_first_maximum() {
        // one image 3x5, 1 channel: the last row and column are dropped (floor)
        let x = [
            1.0, 5.0, 2.0, 2.0, 9.0, //
            3.0, 4.0, 2.0, 0.0, 9.0, //
            9.0, 9.0, 9.0, 9.0, 9.0,
        ];
        let y = max_pool2(&x, [1, 3, 5, 1]);
        assert_eq!(y, vec![5.0, 2.0]);
        let dx = max_pool2_backward(&x, &[10.0, 20.0], [1, 3, 5, 1]);
        assert_eq!(
            dx,
            vec![
                0.0, 10.0, 20.0, 0.0, 0.0, //
                0.0, 0.0, 0.0, 0.0, 0.0, //
                0.0, 0.0, 0.0, 0.0, 0.0
            ]
        );
    }
}
