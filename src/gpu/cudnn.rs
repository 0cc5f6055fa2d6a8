//! The few cuDNN calls VGG16 needs, over cudarc's raw bindings, each returning a typed error
//! instead of a status to check: descriptors that free themselves, and the convolution,
//! bias, ReLU and max-pool passes on NHWC `f32` tensors. Algorithms come from cuDNN's
//! heuristics (the same choice for the same shapes on the same card and cuDNN, so a run is
//! repeatable) limited to deterministic ones; see [`Precision`] for the math they may use.

use std::ffi::{c_int, c_void};
use std::ptr::null_mut;

use cudarc::cudnn::sys;

use super::{GpuError, Precision};

fn check(call: &'static str, status: sys::cudnnStatus_t) -> Result<(), GpuError> {
    if status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        return Ok(());
    }
    // SAFETY: cudnnGetErrorString returns a static NUL-terminated string for any status
    let text = unsafe {
        let p = sys::cudnnGetErrorString(status);
        if p.is_null() {
            format!("{status:?}")
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(GpuError::Cudnn { call, status: text })
}

impl Precision {
    fn math(self) -> sys::cudnnMathType_t {
        match self {
            Precision::Fp32 => sys::cudnnMathType_t::CUDNN_FMA_MATH,
            Precision::Tf32 => sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
        }
    }
}

/// A cuDNN handle bound to one stream. Not for concurrent use: [`super::Cuda`] holds it
/// behind a lock.
pub struct Handle(sys::cudnnHandle_t);

// SAFETY: a cuDNN handle may move between threads; faceattr never uses one from two threads
// at once (it lives behind `Cuda`'s mutex).
unsafe impl Send for Handle {}

impl Handle {
    pub fn new(stream: sys::cudaStream_t) -> Result<Self, GpuError> {
        let mut h = null_mut();
        // SAFETY: out-pointer to a local
        check("cudnnCreate", unsafe { sys::cudnnCreate(&mut h) })?;
        let handle = Handle(h);
        // SAFETY: the handle was just created; the stream outlives it (both owned by Cuda)
        check("cudnnSetStream", unsafe { sys::cudnnSetStream(h, stream) })?;
        Ok(handle)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate and destroyed once
        unsafe { sys::cudnnDestroy(self.0) };
    }
}

/// cuDNN's version, e.g. 90100 for 9.1.0.
pub fn version() -> usize {
    // SAFETY: no arguments, no state
    unsafe { sys::cudnnGetVersion() }
}

macro_rules! descriptor {
    ($name:ident, $raw:ty, $create:ident, $destroy:ident) => {
        pub struct $name($raw);

        // SAFETY: descriptors are plain host-side structures
        unsafe impl Send for $name {}

        impl $name {
            fn create() -> Result<Self, GpuError> {
                let mut d = null_mut();
                // SAFETY: out-pointer to a local
                check(stringify!($create), unsafe { sys::$create(&mut d) })?;
                Ok($name(d))
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: created by the matching create call and destroyed once
                unsafe { sys::$destroy(self.0) };
            }
        }
    };
}

descriptor!(
    TensorDesc,
    sys::cudnnTensorDescriptor_t,
    cudnnCreateTensorDescriptor,
    cudnnDestroyTensorDescriptor
);
descriptor!(
    FilterDesc,
    sys::cudnnFilterDescriptor_t,
    cudnnCreateFilterDescriptor,
    cudnnDestroyFilterDescriptor
);
descriptor!(
    ConvDesc,
    sys::cudnnConvolutionDescriptor_t,
    cudnnCreateConvolutionDescriptor,
    cudnnDestroyConvolutionDescriptor
);
descriptor!(
    ActivationDesc,
    sys::cudnnActivationDescriptor_t,
    cudnnCreateActivationDescriptor,
    cudnnDestroyActivationDescriptor
);
descriptor!(
    PoolDesc,
    sys::cudnnPoolingDescriptor_t,
    cudnnCreatePoolingDescriptor,
    cudnnDestroyPoolingDescriptor
);

fn int(v: usize) -> Result<c_int, GpuError> {
    c_int::try_from(v).map_err(|_| GpuError::TooLarge(v))
}

impl TensorDesc {
    /// A float32 tensor `[n, h, w, c]` stored channels-last.
    pub fn nhwc([n, h, w, c]: [usize; 4]) -> Result<Self, GpuError> {
        let d = Self::create()?;
        // SAFETY: d is a live descriptor
        check("cudnnSetTensor4dDescriptor", unsafe {
            sys::cudnnSetTensor4dDescriptor(
                d.0,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                int(n)?,
                int(c)?,
                int(h)?,
                int(w)?,
            )
        })?;
        Ok(d)
    }

    /// A per-channel bias `[1, c, 1, 1]`, broadcast over a tensor's images and pixels.
    pub fn bias(c: usize) -> Result<Self, GpuError> {
        Self::nhwc([1, 1, 1, c])
    }
}

impl FilterDesc {
    /// A float32 3x3 kernel with `cout` outputs over `cin` channels, stored `[cout, 3, 3, cin]`.
    pub fn ohwi(cout: usize, cin: usize) -> Result<Self, GpuError> {
        let d = Self::create()?;
        // SAFETY: d is a live descriptor
        check("cudnnSetFilter4dDescriptor", unsafe {
            sys::cudnnSetFilter4dDescriptor(
                d.0,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
                int(cout)?,
                int(cin)?,
                3,
                3,
            )
        })?;
        Ok(d)
    }
}

impl ConvDesc {
    /// Keras' 3x3 'same' convolution (cross-correlation, padding 1, stride 1), summing in
    /// float32, with `precision`'s math.
    pub fn same3x3(precision: Precision) -> Result<Self, GpuError> {
        let d = Self::create()?;
        // SAFETY: d is a live descriptor
        check("cudnnSetConvolution2dDescriptor", unsafe {
            sys::cudnnSetConvolution2dDescriptor(
                d.0,
                1,
                1,
                1,
                1,
                1,
                1,
                sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
            )
        })?;
        d.set_math(precision.math())?;
        Ok(d)
    }

    fn set_math(&self, math: sys::cudnnMathType_t) -> Result<(), GpuError> {
        // SAFETY: self is a live descriptor
        check("cudnnSetConvolutionMathType", unsafe {
            sys::cudnnSetConvolutionMathType(self.0, math)
        })
    }
}

impl ActivationDesc {
    pub fn relu() -> Result<Self, GpuError> {
        let d = Self::create()?;
        // SAFETY: d is a live descriptor
        check("cudnnSetActivationDescriptor", unsafe {
            sys::cudnnSetActivationDescriptor(
                d.0,
                sys::cudnnActivationMode_t::CUDNN_ACTIVATION_RELU,
                sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                0.0,
            )
        })?;
        Ok(d)
    }
}

impl PoolDesc {
    /// Keras' 2x2 max-pool with stride 2 and no padding (an odd last row or column is
    /// dropped); the gradient goes to one maximum, chosen deterministically.
    pub fn max2() -> Result<Self, GpuError> {
        let d = Self::create()?;
        // SAFETY: d is a live descriptor
        check("cudnnSetPooling2dDescriptor", unsafe {
            sys::cudnnSetPooling2dDescriptor(
                d.0,
                sys::cudnnPoolingMode_t::CUDNN_POOLING_MAX_DETERMINISTIC,
                sys::cudnnNanPropagation_t::CUDNN_PROPAGATE_NAN,
                2,
                2,
                0,
                0,
                2,
                2,
            )
        })?;
        Ok(d)
    }
}

/// Raw device addresses, as cuDNN takes them.
pub type In = *const c_void;
pub type Out = *mut c_void;

/// The descriptors of one convolution layer applied to one input shape.
pub struct ConvShapes {
    pub x: TensorDesc,
    pub y: TensorDesc,
    pub w: FilterDesc,
    pub bias: TensorDesc,
    pub conv: ConvDesc,
}

impl ConvShapes {
    /// For an NHWC input `[n, h, w, cin]` and `cout` outputs.
    pub fn new(
        [n, h, w, cin]: [usize; 4],
        cout: usize,
        precision: Precision,
    ) -> Result<Self, GpuError> {
        Ok(ConvShapes {
            x: TensorDesc::nhwc([n, h, w, cin])?,
            y: TensorDesc::nhwc([n, h, w, cout])?,
            w: FilterDesc::ohwi(cout, cin)?,
            bias: TensorDesc::bias(cout)?,
            conv: ConvDesc::same3x3(precision)?,
        })
    }
}

/// Which pass of a convolution an algorithm is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// An algorithm cuDNN's heuristics chose, with the math it runs in and its workspace.
#[derive(Debug, Clone, Copy)]
pub struct Algo {
    pub id: c_int,
    pub math: sys::cudnnMathType_t,
    pub workspace: usize,
}

/// Largest workspace an algorithm may ask for.
const WORKSPACE_LIMIT: usize = 2 << 30;

/// Whether an algorithm's math keeps to `precision`: in fp32 neither tensor-op math nor the
/// default math (which lets Ampere and later cards use TF32 for float32 data).
fn math_allowed(math: sys::cudnnMathType_t, precision: Precision) -> bool {
    precision == Precision::Tf32
        || math == sys::cudnnMathType_t::CUDNN_FMA_MATH
        || math == sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
}

/// The math to run an algorithm with: FMA only in fp32, whatever cuDNN asked for otherwise.
fn math_for(math: sys::cudnnMathType_t, precision: Precision) -> sys::cudnnMathType_t {
    match precision {
        Precision::Fp32 => sys::cudnnMathType_t::CUDNN_FMA_MATH,
        Precision::Tf32 => math,
    }
}

macro_rules! first_usable {
    ($perfs:expr, $count:expr, $precision:expr) => {
        $perfs[..$count as usize]
            .iter()
            .find(|p| {
                p.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                    && p.determinism == sys::cudnnDeterminism_t::CUDNN_DETERMINISTIC
                    && p.memory <= WORKSPACE_LIMIT
                    && math_allowed(p.mathType, $precision)
            })
            .map(|p| Algo {
                id: p.algo as c_int,
                math: math_for(p.mathType, $precision),
                workspace: p.memory,
            })
    };
}

/// cuDNN's heuristic choice for `pass` on `s`: the first deterministic algorithm that works
/// for these shapes and keeps to `precision`.
pub fn choose(
    handle: &Handle,
    s: &ConvShapes,
    pass: Pass,
    precision: Precision,
) -> Result<Algo, GpuError> {
    const MAX: usize = 16;
    s.conv.set_math(precision.math())?;
    let mut count: c_int = 0;
    let found = match pass {
        Pass::Forward => {
            // SAFETY: zeroed plain-data structs, filled by cuDNN
            let mut perfs: [sys::cudnnConvolutionFwdAlgoPerf_t; MAX] =
                unsafe { std::mem::zeroed() };
            // SAFETY: live handle and descriptors; perfs has room for MAX results
            check("cudnnGetConvolutionForwardAlgorithm_v7", unsafe {
                sys::cudnnGetConvolutionForwardAlgorithm_v7(
                    handle.0,
                    s.x.0,
                    s.w.0,
                    s.conv.0,
                    s.y.0,
                    MAX as c_int,
                    &mut count,
                    perfs.as_mut_ptr(),
                )
            })?;
            first_usable!(perfs, count.clamp(0, MAX as c_int), precision)
        }
        Pass::BackwardData => {
            // SAFETY: as above
            let mut perfs: [sys::cudnnConvolutionBwdDataAlgoPerf_t; MAX] =
                unsafe { std::mem::zeroed() };
            // SAFETY: as above
            check("cudnnGetConvolutionBackwardDataAlgorithm_v7", unsafe {
                sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                    handle.0,
                    s.w.0,
                    s.y.0,
                    s.conv.0,
                    s.x.0,
                    MAX as c_int,
                    &mut count,
                    perfs.as_mut_ptr(),
                )
            })?;
            first_usable!(perfs, count.clamp(0, MAX as c_int), precision)
        }
        Pass::BackwardFilter => {
            // SAFETY: as above
            let mut perfs: [sys::cudnnConvolutionBwdFilterAlgoPerf_t; MAX] =
                unsafe { std::mem::zeroed() };
            // SAFETY: as above
            check("cudnnGetConvolutionBackwardFilterAlgorithm_v7", unsafe {
                sys::cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                    handle.0,
                    s.x.0,
                    s.y.0,
                    s.conv.0,
                    s.w.0,
                    MAX as c_int,
                    &mut count,
                    perfs.as_mut_ptr(),
                )
            })?;
            first_usable!(perfs, count.clamp(0, MAX as c_int), precision)
        }
    };
    found.ok_or(GpuError::NoAlgorithm(pass))
}

/// The algorithm id as the enum cuDNN's call takes. cuDNN's heuristics returned it, so it is
/// one of the enum's values.
macro_rules! algo_enum {
    ($ty:ty, $id:expr) => {{
        let id: c_int = $id;
        // SAFETY: the id came from cuDNN as a value of this C enum (a 32-bit int)
        let algo = unsafe { std::mem::transmute::<c_int, $ty>(id) };
        algo
    }};
}

const ONE: f32 = 1.0;
const ZERO: f32 = 0.0;

fn scale(v: &f32) -> *const c_void {
    v as *const f32 as *const c_void
}

/// `y = conv(x, w)` (overwriting y).
///
/// # Safety
/// The addresses point to live device buffers of the sizes `s` describes (workspace:
/// `algo.workspace` bytes) on the handle's stream.
pub unsafe fn conv_forward(
    handle: &Handle,
    s: &ConvShapes,
    algo: Algo,
    x: In,
    w: In,
    workspace: Out,
    y: Out,
) -> Result<(), GpuError> {
    s.conv.set_math(algo.math)?;
    let id = algo_enum!(sys::cudnnConvolutionFwdAlgo_t, algo.id);
    check("cudnnConvolutionForward", unsafe {
        sys::cudnnConvolutionForward(
            handle.0,
            scale(&ONE),
            s.x.0,
            x,
            s.w.0,
            w,
            s.conv.0,
            id,
            workspace,
            algo.workspace,
            scale(&ZERO),
            s.y.0,
            y,
        )
    })
}

/// `y = relu(y + bias)`, in place.
///
/// # Safety
/// As [`conv_forward`]; `y` is `s.y`'s output and `bias` has `cout` floats.
pub unsafe fn bias_relu(
    handle: &Handle,
    s: &ConvShapes,
    relu: &ActivationDesc,
    bias: In,
    y: Out,
) -> Result<(), GpuError> {
    check("cudnnAddTensor", unsafe {
        sys::cudnnAddTensor(handle.0, scale(&ONE), s.bias.0, bias, scale(&ONE), s.y.0, y)
    })?;
    check("cudnnActivationForward", unsafe {
        sys::cudnnActivationForward(
            handle.0,
            relu.0,
            scale(&ONE),
            s.y.0,
            y,
            scale(&ZERO),
            s.y.0,
            y,
        )
    })
}

/// `dy = dy * (y > 0)`, in place: the gradient through the ReLU whose output is `y`.
///
/// # Safety
/// As [`bias_relu`].
pub unsafe fn relu_backward(
    handle: &Handle,
    desc: &TensorDesc,
    relu: &ActivationDesc,
    y: In,
    dy: Out,
) -> Result<(), GpuError> {
    check("cudnnActivationBackward", unsafe {
        sys::cudnnActivationBackward(
            handle.0,
            relu.0,
            scale(&ONE),
            desc.0,
            y,
            desc.0,
            dy as In,
            desc.0,
            y,
            scale(&ZERO),
            desc.0,
            dy,
        )
    })
}

/// The 2x2 max-pool of `x` (`x_desc`) into `y` (`y_desc`).
///
/// # Safety
/// As [`conv_forward`], with buffers of the descriptors' sizes.
pub unsafe fn pool_forward(
    handle: &Handle,
    pool: &PoolDesc,
    x_desc: &TensorDesc,
    x: In,
    y_desc: &TensorDesc,
    y: Out,
) -> Result<(), GpuError> {
    check("cudnnPoolingForward", unsafe {
        sys::cudnnPoolingForward(
            handle.0,
            pool.0,
            scale(&ONE),
            x_desc.0,
            x,
            scale(&ZERO),
            y_desc.0,
            y,
        )
    })
}

/// The gradient of the max-pool's input `dx` from its output's `dy`.
///
/// # Safety
/// As [`pool_forward`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn pool_backward(
    handle: &Handle,
    pool: &PoolDesc,
    x_desc: &TensorDesc,
    x: In,
    y_desc: &TensorDesc,
    y: In,
    dy: In,
    dx: Out,
) -> Result<(), GpuError> {
    check("cudnnPoolingBackward", unsafe {
        sys::cudnnPoolingBackward(
            handle.0,
            pool.0,
            scale(&ONE),
            y_desc.0,
            y,
            y_desc.0,
            dy,
            x_desc.0,
            x,
            scale(&ZERO),
            x_desc.0,
            dx,
        )
    })
}

/// The kernel gradient `dw` and bias gradient `db` of a convolution from its input `x` and
/// output gradient `dy` (both overwritten, not accumulated).
///
/// # Safety
/// As [`conv_forward`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv_backward_weights(
    handle: &Handle,
    s: &ConvShapes,
    algo: Algo,
    x: In,
    dy: In,
    workspace: Out,
    dw: Out,
    db: Out,
) -> Result<(), GpuError> {
    check("cudnnConvolutionBackwardBias", unsafe {
        sys::cudnnConvolutionBackwardBias(
            handle.0,
            scale(&ONE),
            s.y.0,
            dy,
            scale(&ZERO),
            s.bias.0,
            db,
        )
    })?;
    s.conv.set_math(algo.math)?;
    let id = algo_enum!(sys::cudnnConvolutionBwdFilterAlgo_t, algo.id);
    check("cudnnConvolutionBackwardFilter", unsafe {
        sys::cudnnConvolutionBackwardFilter(
            handle.0,
            scale(&ONE),
            s.x.0,
            x,
            s.y.0,
            dy,
            s.conv.0,
            id,
            workspace,
            algo.workspace,
            scale(&ZERO),
            s.w.0,
            dw,
        )
    })
}

/// The input gradient `dx` of a convolution from its kernel and output gradient `dy`.
///
/// # Safety
/// As [`conv_forward`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv_backward_data(
    handle: &Handle,
    s: &ConvShapes,
    algo: Algo,
    w: In,
    dy: In,
    workspace: Out,
    dx: Out,
) -> Result<(), GpuError> {
    s.conv.set_math(algo.math)?;
    let id = algo_enum!(sys::cudnnConvolutionBwdDataAlgo_t, algo.id);
    check("cudnnConvolutionBackwardData", unsafe {
        sys::cudnnConvolutionBackwardData(
            handle.0,
            scale(&ONE),
            s.w.0,
            w,
            s.y.0,
            dy,
            s.conv.0,
            id,
            workspace,
            algo.workspace,
            scale(&ZERO),
            s.x.0,
            dx,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sys::cudnnMathType_t::*;

    #[test]
    fn fp32_runs_every_algorithm_on_fma_math_and_refuses_tensor_ops() {
        assert!(!math_allowed(CUDNN_TENSOR_OP_MATH, Precision::Fp32));
        assert!(!math_allowed(
            CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
            Precision::Fp32
        ));
        assert!(math_allowed(CUDNN_DEFAULT_MATH, Precision::Fp32));
        // default math would let an A100 or later use TF32: fp32 pins FMA
        assert_eq!(
            math_for(CUDNN_DEFAULT_MATH, Precision::Fp32),
            CUDNN_FMA_MATH
        );
        assert!(math_allowed(CUDNN_TENSOR_OP_MATH, Precision::Tf32));
        assert_eq!(
            math_for(CUDNN_TENSOR_OP_MATH, Precision::Tf32),
            CUDNN_TENSOR_OP_MATH
        );
    }
}
