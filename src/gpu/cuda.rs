//! The GPU faceattr runs on: its CUDA context, one stream, a cuDNN handle on that stream, and
//! what is worth keeping between batches (the workspace, the chosen algorithms). Opened once
//! per process by `--backend cuda`, and held in [`active`] for the model's layers to find.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::cudnn::{self, ActivationDesc, Algo, Handle, Pass, PoolDesc};
use super::libraries::{self, SearchEnv};
use super::{GpuError, Precision};

/// One GPU, ready for VGG16's layers.
pub struct Cuda {
    /// The card's name, as the driver gives it.
    pub name: String,
    /// Compute capability (9, 0 for an H100/H200).
    pub capability: (i32, i32),
    /// cuDNN's version, e.g. 90100.
    pub cudnn_version: usize,
    state: Mutex<State>,
}

/// Everything that issues work to the stream, used by one thread at a time.
pub(super) struct State {
    pub stream: Arc<CudaStream>,
    pub handle: Handle,
    pub relu: ActivationDesc,
    pub pool: PoolDesc,
    pub precision: Precision,
    workspace: Option<CudaSlice<u8>>,
    algos: HashMap<(Pass, [usize; 5]), Algo>,
    /// Keeps the context alive as long as the stream and handle.
    _ctx: Arc<CudaContext>,
}

impl std::fmt::Debug for Cuda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Cuda({}, sm_{}{}, cuDNN {}, {:?})",
            self.name,
            self.capability.0,
            self.capability.1,
            self.cudnn_version,
            self.precision()
        )
    }
}

fn driver(call: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> GpuError {
    move |e| GpuError::Driver {
        call,
        reason: e
            .error_string()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("{:?}", e.0)),
    }
}

/// Opens GPU `ordinal`: finds and loads the libraries, creates the context, a stream and a
/// cuDNN handle. Every failure is a [`GpuError`] that says what is missing and how to get it.
pub fn open(ordinal: usize, precision: Precision) -> Result<Arc<Cuda>, GpuError> {
    let env = SearchEnv::from_process();
    let found = libraries::find_all(&env)?;
    // cudarc loads by name, through the loader's path: check before its first call, which
    // would panic on a library it cannot load
    // SAFETY: these only try dlopen on candidate names
    let loadable = [unsafe { cudarc::driver::sys::is_culib_present() }, unsafe {
        cudarc::cudnn::sys::is_culib_present()
    }];
    for (f, ok) in found.iter().zip(loadable) {
        if ok {
            continue;
        }
        let path = f.path.display().to_string();
        // SAFETY: loading NVIDIA's library runs its initialisers, as using it would
        return Err(match unsafe { libloading::Library::new(&f.path) } {
            Err(e) => GpuError::NotLoadable {
                library: f.library.stem,
                path,
                reason: match std::error::Error::source(&e) {
                    Some(why) => format!("{e}: {why}"),
                    None => e.to_string(),
                },
            },
            Ok(_) => GpuError::NotOnLoaderPath {
                library: f.library.stem,
                path,
                folder: f.folder().display().to_string(),
            },
        });
    }
    let ctx = crate::panics::contained(|| CudaContext::new(ordinal))
        .map_err(|reason| GpuError::Driver {
            call: "cuInit",
            reason,
        })?
        .map_err(driver("cuDevicePrimaryCtxRetain"))?;
    // one stream: the bookkeeping cudarc does for several is not needed
    // SAFETY: called before any buffer is allocated on the context
    unsafe { ctx.disable_event_tracking() };
    let name = ctx.name().map_err(driver("cuDeviceGetName"))?;
    let capability = ctx
        .compute_capability()
        .map_err(driver("cuDeviceGetAttribute"))?;
    let stream = ctx.default_stream();
    let handle = Handle::new(stream.cu_stream() as _)?;
    let state = State {
        stream,
        handle,
        relu: ActivationDesc::relu()?,
        pool: PoolDesc::max2()?,
        precision,
        workspace: None,
        algos: HashMap::new(),
        _ctx: ctx,
    };
    Ok(Arc::new(Cuda {
        name,
        capability,
        cudnn_version: cudnn::version(),
        state: Mutex::new(state),
    }))
}

static ACTIVE: Mutex<Option<Arc<Cuda>>> = Mutex::new(None);

/// The GPU the model's layers run on, if `--backend cuda` opened one.
pub fn active() -> Option<Arc<Cuda>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Makes `gpu` the one the model's layers run on (or none: back to the CPU).
pub fn activate(gpu: Option<Arc<Cuda>>) {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = gpu;
}

impl Cuda {
    pub fn precision(&self) -> Precision {
        self.lock().precision
    }

    /// Changes the math the convolutions use from the next pass on.
    pub fn set_precision(&self, precision: Precision) {
        let mut st = self.lock();
        if st.precision != precision {
            st.precision = precision;
            st.algos.clear();
        }
    }

    /// The stream and handle, locked for one pass.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A device buffer's address as cuDNN takes it.
pub(super) fn addr<T>(b: &CudaSlice<T>, stream: &CudaStream) -> cudnn::In {
    // event tracking is off, so the guard records nothing
    b.device_ptr(stream).0 as cudnn::In
}

pub(super) fn addr_mut<T>(b: &mut CudaSlice<T>, stream: &CudaStream) -> cudnn::Out {
    b.device_ptr_mut(stream).0 as cudnn::Out
}

impl State {
    /// A new device buffer of `len` floats, contents undefined.
    pub fn alloc(&self, len: usize) -> Result<CudaSlice<f32>, GpuError> {
        // SAFETY: every buffer is written by a cuDNN call or a copy before it is read
        unsafe { self.stream.alloc::<f32>(len.max(1)) }.map_err(driver("cuMemAllocAsync"))
    }

    pub fn upload(&self, host: &[f32]) -> Result<CudaSlice<f32>, GpuError> {
        self.stream
            .clone_htod(host)
            .map_err(driver("cuMemcpyHtoDAsync"))
    }

    pub fn download(&self, device: &CudaSlice<f32>) -> Result<Vec<f32>, GpuError> {
        self.stream
            .clone_dtoh(device)
            .map_err(driver("cuMemcpyDtoHAsync"))
    }

    /// The algorithm for `pass` of a convolution at `shape` (n, h, w, cin, cout), chosen once.
    pub fn algo(
        &mut self,
        pass: Pass,
        shape: [usize; 5],
        descs: &cudnn::ConvShapes,
    ) -> Result<Algo, GpuError> {
        if let Some(a) = self.algos.get(&(pass, shape)) {
            return Ok(*a);
        }
        let a = cudnn::choose(&self.handle, descs, pass, self.precision)?;
        self.algos.insert((pass, shape), a);
        Ok(a)
    }

    /// A workspace of at least `bytes`, kept and grown across calls.
    pub fn workspace(&mut self, bytes: usize) -> Result<cudnn::Out, GpuError> {
        if self.workspace.as_ref().is_none_or(|w| w.len() < bytes) {
            self.workspace = None; // free the old one first
            // SAFETY: a workspace's contents are cuDNN's scratch space
            let w = unsafe { self.stream.alloc::<u8>(bytes.max(1)) }
                .map_err(driver("cuMemAllocAsync"))?;
            self.workspace = Some(w);
        }
        let stream = self.stream.clone();
        Ok(self
            .workspace
            .as_mut()
            .map_or(std::ptr::null_mut(), |w| addr_mut(w, &stream)))
    }
}
