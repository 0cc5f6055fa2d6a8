//! A safe face on the `gemm` crate (the matrix product burn-flex itself uses), and the
//! machine's measured float32 peak through it.

use std::time::Instant;

/// A read-only matrix view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            rs: 1,
            cs: cols,
        }
    }
    /// Whether every element of a `rows x cols` view lies inside `data`, computed without
    /// overflow, with strides the product can take as `isize`.
    fn covers(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        let fits = |v: usize| isize::try_from(v).is_ok();
        let last = (rows - 1)
            .checked_mul(self.rs)
            .zip((cols - 1).checked_mul(self.cs))
            .and_then(|(r, c)| r.checked_add(c));
        fits(self.rs) && fits(self.cs) && last.is_some_and(|l| l < self.data.len())
    }
}

/// Threads for one product: `Serial` inside work that is already split across threads.
#[derive(Clone, Copy, Debug)]
pub enum Threads {
    Serial,
    All,
}

/// `c[m x n] (row-major, row stride ldc) = (accumulate ? c : 0) + a[m x k] . b[k x n]`.
///
/// Panics if a view is too short for its shape, or if `ldc < n` (output rows that overlap
/// would be written by several threads at once): a bug in the caller, never input. The
/// checks cannot overflow, so no safe call reads or writes outside the slices.
pub fn matmul(
    (m, n, k): (usize, usize, usize),
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    threads: Threads,
) {
    assert!(a.covers(m, k) && b.covers(k, n), "matmul operand too short");
    let c_end = (m.max(1) - 1)
        .checked_mul(ldc)
        .and_then(|v| v.checked_add(n));
    assert!(
        m == 0
            || n == 0
            || (ldc >= n && isize::try_from(ldc).is_ok() && c_end.is_some_and(|e| e <= c.len())),
        "matmul output too short, or its rows overlap (ldc < n)"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return;
    }
    let par = match threads {
        Threads::Serial => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    // SAFETY: the asserts above keep every index the product reads or writes inside the
    // slices, with strides that fit an isize; `ldc >= n` keeps the output rows disjoint, so
    // the threads of one product never write the same element; `c` is borrowed mutably, so
    // nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// This machine's float32 matrix-product peak in GFLOP/s through `gemm`: every rayon thread
/// multiplies its own pair of matrices at once (serial products, as the convolutions run
/// them). The best of three shapes (square, and two of VGG16's im2col shapes), each the
/// median of `repeats` rounds after one warm-up; `scale` shrinks them (1.0 = full size).
pub fn peak_gflops(scale: f64, repeats: usize) -> f64 {
    [(1024, 1024, 1024), (512, 256, 2304), (256, 512, 4608)]
        .iter()
        .map(|&(m, n, k)| {
            let s = |v: usize| ((v as f64 * scale) as usize).max(8);
            product_gflops((s(m), s(n), s(k)), repeats)
        })
        .fold(0.0, f64::max)
}

fn product_gflops((m, n, k): (usize, usize, usize), repeats: usize) -> f64 {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let a: Vec<f32> = (0..m * k).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
    let mut outs = vec![vec![0.0f32; m * n]; threads];
    let mut run = || {
        let t = Instant::now();
        outs.par_iter_mut().for_each(|c| {
            matmul(
                (m, n, k),
                MatRef::rows(&a, k),
                MatRef::rows(&b, n),
                c,
                n,
                false,
                Threads::Serial,
            )
        });
        t.elapsed().as_secs_f64()
    };
    run();
    let mut times: Vec<f64> = (0..repeats.max(1)).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    threads as f64 * 2.0 * (m * n * k) as f64 / times[times.len() / 2] / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn misuse_panics_before_any_unsafe_access() {
        let a = vec![1.0f32; 16];
        let b = vec![1.0f32; 16];
        let call = |shape, a: MatRef<'_>, ldc: usize, c_len: usize| {
            let mut c = vec![0.0f32; c_len];
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                matmul(
                    shape,
                    a,
                    MatRef::rows(&b, 4),
                    &mut c,
                    ldc,
                    false,
                    Threads::All,
                )
            }))
            .is_err()
        };
        assert!(!call((4, 4, 4), MatRef::rows(&a, 4), 4, 16), "a valid call");
        // overlapping output rows: two threads would write the same elements
        assert!(call((4, 4, 4), MatRef::rows(&a, 4), 2, 16));
        // strides whose products overflow usize used to wrap past the length check
        let huge = MatRef {
            data: &a,
            rs: usize::MAX / 2 + 1,
            cs: 1,
        };
        assert!(call((4, 4, 4), huge, 4, 16));
        let wrap = MatRef {
            data: &a,
            rs: 1,
            cs: 1 << 62,
        };
        assert!(call((4, 4, 4), wrap, 4, 16));
        assert!(call((4, 4, 4), MatRef::rows(&a, 4), usize::MAX / 2, 16));
        assert!(call((4, 4, 4), MatRef::rows(&a, 4), 4, 15));
    }

    #[test]
    fn matches_naive_product_with_transpose_and_accumulate() {
        let (m, n, k) = (37, 19, 53);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(m, n, k, &a, &b);
        let mut c = vec![1.0; m * n];
        matmul(
            (m, n, k),
            MatRef::rows(&a, k),
            MatRef::rows(&b, n),
            &mut c,
            n,
            false,
            Threads::All,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
        // a^T stored as [k x m]: the transposed view must give the same product, accumulated.
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        matmul(
            (m, n, k),
            MatRef::transposed(&at, m),
            MatRef::rows(&b, n),
            &mut c,
            n,
            true,
            Threads::Serial,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((x - 2.0 * y).abs() < 2e-4, "{x} vs {}", 2.0 * y);
        }
    }

    #[test]
    #[should_panic(expected = "too short")]
    fn refuses_short_operands() {
        let a = vec![0.0; 5];
        let mut c = vec![0.0; 4];
        matmul(
            (2, 2, 3),
            MatRef::rows(&a, 3),
            MatRef::rows(&a, 2),
            &mut c,
            2,
            false,
            Threads::Serial,
        );
    }
}
