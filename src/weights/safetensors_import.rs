//! safetensors checkpoints with torchvision keys (`features.N.weight`) or timm keys (the same
//! `features.*`, with the classifier renamed to `pre_logits.*` / `head.fc.*`, which a no-top
//! base ignores). faceattr's own saved models are safetensors too, but are read by
//! `model::saved`, which also reads their metadata.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::{NamedTensor, WeightFormat, WeightSet, WeightsError, canonical_from_torch};
use crate::preprocess::Preprocessing;

const FORMAT: &str = "safetensors";

/// safetensors starts with a little-endian u64 header length followed by a JSON object.
pub fn looks_like_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{'
}

pub fn load(path: &Path) -> Result<WeightSet, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| WeightsError::io(path, e))?;
    let raw = read_all(path, &bytes)?;
    Ok(WeightSet {
        origin: path.to_path_buf(),
        format: WeightFormat::Safetensors,
        preprocessing: Preprocessing::Torch,
        tensors: canonical_from_torch(raw),
    })
}

/// Every floating-point tensor under its original key, converted to f32.
pub fn read_all(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, NamedTensor>, WeightsError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| WeightsError::malformed(path, FORMAT, e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            // Integer bookkeeping such as BatchNorm's num_batches_tracked is not a weight.
            Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::BOOL => continue,
            other => {
                return Err(WeightsError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor: name,
                    dtype: format!("{other:?}"),
                });
            }
        };
        out.insert(name, NamedTensor::new(view.shape().to_vec(), values));
    }
    Ok(out)
}
