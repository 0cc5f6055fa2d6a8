//! faceattr's own CPU kernels for VGG16's layers, on plain `f32` slices in channels-last
//! (NHWC) layout: the 3x3 'same' convolution as a matrix product on the `gemm` crate with
//! bias and ReLU fused, its backward pass, and the 2x2 max-pool. They replace burn-flex's
//! convolution where faceattr spends its time (see `model::host_convs`), and they are what
//! `faceattr bench model` measures against the machine's peak.
//!
//! Every result is deterministic: each output element is summed in one fixed order, whatever
//! the number of threads.

pub mod conv3x3;
pub mod gemm;
pub mod layout;
pub mod pool;
pub mod shape;
pub mod winograd;
pub mod winograd4;
pub mod winograd_batch;

use std::sync::atomic::{AtomicBool, Ordering};

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the host kernels off (or back on) for this process, so the same workload can be
/// measured on burn's own convolution (`faceattr bench model --kernels burn`).
pub fn set_enabled(on: bool) {
    DISABLED.store(!on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    !DISABLED.load(Ordering::Relaxed)
}
