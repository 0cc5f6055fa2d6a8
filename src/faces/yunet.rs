//! YuNet, the face detector network (MIT; libfacedetection.train, distributed by OpenCV Zoo as
//! `face_detection_yunet`, the model behind OpenCV's `FaceDetectorYN`). The ONNX file is
//! embedded in the binary (`models/yunet/`, 230 KB) and run by tract, a pure-Rust ONNX
//! runtime: no system library, no download. The graph is optimised once per input size, on
//! first use, and the plan kept for the next photo of that size.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

use super::FaceError;
use super::decode::{RawOutput, StrideOutput};

/// The detector built into faceattr.
pub const EMBEDDED: &[u8] = include_bytes!("../../models/yunet/yunet.onnx");
/// SHA-256 of [`EMBEDDED`], as its README gives it.
pub const EMBEDDED_SHA256: &str =
    "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0";

pub const STRIDES: [usize; 3] = [8, 16, 32];
/// Values per grid cell of each output kind, in the order of [`OUTPUT_KINDS`].
const KIND_WIDTH: [usize; 4] = [1, 1, 4, 10];
const OUTPUT_KINDS: [&str; 4] = ["cls", "obj", "bbox", "kps"];
/// Plans kept at once (one per distinct padded input size).
const MAX_PLANS: usize = 64;

type Plan = Arc<TypedRunnableModel>;

pub struct Yunet {
    origin: String,
    graph: InferenceModel,
    /// For each stride and output kind, the output's index in the graph.
    outputs: [[usize; 4]; 3],
    plans: Mutex<HashMap<(usize, usize), Plan>>,
}

impl Yunet {
    /// The embedded YuNet.
    pub fn embedded() -> Result<Self, FaceError> {
        Self::from_bytes(EMBEDDED, "embedded YuNet")
    }

    /// A YuNet ONNX file (the same inputs and outputs as the embedded one).
    pub fn from_file(path: &Path) -> Result<Self, FaceError> {
        let bytes = std::fs::read(path).map_err(|e| FaceError::Model {
            origin: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, FaceError> {
        let bad = |reason: String| FaceError::Model {
            origin: origin.to_string(),
            reason,
        };
        // tract checks what it parses; a panic deep inside it on a crafted file is still
        // turned into an error here rather than taking the process down.
        let graph = guarded(|| tract_onnx::onnx().model_for_read(&mut &bytes[..]))
            .map_err(bad)?
            .map_err(|e| bad(format!("{e:#}")))?;
        let inputs = graph.input_outlets().map_err(|e| bad(e.to_string()))?;
        if inputs.len() != 1 {
            return Err(bad(format!("{} inputs, YuNet has one", inputs.len())));
        }
        let names: Vec<String> = graph
            .output_outlets()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .map(|o| graph.node(o.node).name.clone())
            .collect();
        let label = |i: usize| {
            graph
                .outlet_label(graph.outputs[i])
                .map(str::to_string)
                .unwrap_or_else(|| names[i].clone())
        };
        let labels: Vec<String> = (0..names.len()).map(label).collect();
        let mut outputs = [[0usize; 4]; 3];
        for (si, s) in STRIDES.iter().enumerate() {
            for (ki, kind) in OUTPUT_KINDS.iter().enumerate() {
                let want = format!("{kind}_{s}");
                outputs[si][ki] = labels
                    .iter()
                    .position(|n| *n == want)
                    .ok_or_else(|| bad(format!("no output named {want} (it has {labels:?})")))?;
            }
        }
        Ok(Yunet {
            origin: origin.to_string(),
            graph,
            outputs,
            plans: Mutex::new(HashMap::new()),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn plan(&self, h: usize, w: usize) -> Result<Plan, FaceError> {
        let failed = |reason: String| FaceError::Run {
            height: h,
            width: w,
            reason,
        };
        if let Some(p) = self.lock().get(&(h, w)) {
            return Ok(p.clone());
        }
        // Built outside the lock: two threads may both build the first plan of a size, which
        // costs a little time once and is simpler than a per-size lock.
        let graph = self.graph.clone();
        let plan = guarded(move || {
            graph
                .with_input_fact(0, f32::fact([1, 3, h, w]).into())?
                .into_optimized()?
                .into_runnable()
        })
        .map_err(&failed)?
        .map_err(|e| failed(format!("{e:#}")))?;
        let mut plans = self.lock();
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert((h, w), plan.clone());
        Ok(plan)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, usize), Plan>> {
        self.plans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the network on a planar BGR input of `h` x `w` (multiples of 32).
    pub fn run(&self, input: &[f32], h: usize, w: usize) -> Result<RawOutput, FaceError> {
        let failed = |reason: String| FaceError::Run {
            height: h,
            width: w,
            reason,
        };
        if h == 0
            || w == 0
            || !h.is_multiple_of(32)
            || !w.is_multiple_of(32)
            || input.len() != 3 * h * w
        {
            return Err(failed(format!(
                "input of {} values is not 3 x {h} x {w} with sides multiples of 32",
                input.len()
            )));
        }
        let plan = self.plan(h, w)?;
        let tensor = Tensor::from_shape(&[1, 3, h, w], input).map_err(|e| failed(e.to_string()))?;
        let outs = guarded(|| plan.run(tvec!(tensor.into())))
            .map_err(&failed)?
            .map_err(|e| failed(format!("{e:#}")))?;
        let mut levels = Vec::with_capacity(3);
        for (si, &stride) in STRIDES.iter().enumerate() {
            let (rows, cols) = (h / stride, w / stride);
            let mut kinds: Vec<Vec<f32>> = Vec::with_capacity(4);
            for (ki, width) in KIND_WIDTH.iter().enumerate() {
                let idx = self.outputs[si][ki];
                let t = outs
                    .get(idx)
                    .ok_or_else(|| failed(format!("output {idx} missing")))?;
                let v = t
                    .try_as_plain_ram()
                    .and_then(|p| p.as_slice::<f32>())
                    .map_err(|e| failed(e.to_string()))?;
                if v.len() != rows * cols * width {
                    return Err(failed(format!(
                        "{}_{stride} has {} values, expected {rows} x {cols} x {width}",
                        OUTPUT_KINDS[ki],
                        v.len()
                    )));
                }
                kinds.push(v.to_vec());
            }
            let mut k = kinds.into_iter();
            let mut next = || k.next().unwrap_or_default();
            levels.push(StrideOutput {
                stride,
                rows,
                cols,
                cls: next(),
                obj: next(),
                bbox: next(),
                kps: next(),
            });
        }
        Ok(RawOutput { levels })
    }
}

/// Runs `f`, turning a panic into an error message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    crate::panics::contained(f).map_err(|msg| format!("the ONNX runtime failed: {msg}"))
}
