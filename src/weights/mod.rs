//! Weight import: every supported checkpoint format is read by its own importer into the
//! same [`WeightSet`] of named tensors in faceattr's canonical layout, so the model never
//! knows which file its numbers came from.
//!
//! Canonical names are Keras' layer names: `block1_conv1.weight` (OIHW), `block1_conv1.bias`,
//! and for a full classifier `dense.weight` (in x out), `batch_normalization.gamma` …,
//! `dense_1.weight`.

mod error;
pub mod fetch;
pub mod keras_h5;
mod pickle;
pub mod registry;
pub mod safetensors_import;
pub mod torch_pth;

pub use error::WeightsError;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::preprocess::Preprocessing;

/// One tensor read from a checkpoint, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NamedTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Keras kernels are HWIO; faceattr (and burn) use OIHW. Any other rank is returned
    /// unchanged.
    pub fn hwio_to_oihw(&self) -> NamedTensor {
        let &[h, w, i, o] = self.shape.as_slice() else {
            return self.clone();
        };
        let mut out = vec![0.0f32; self.data.len()];
        for hh in 0..h {
            for ww in 0..w {
                for ii in 0..i {
                    for oo in 0..o {
                        out[((oo * i + ii) * h + hh) * w + ww] =
                            self.data[((hh * w + ww) * i + ii) * o + oo];
                    }
                }
            }
        }
        NamedTensor::new(vec![o, i, h, w], out)
    }

    /// Transposes a 2-D tensor (PyTorch's Linear is out x in; faceattr's Dense is in x out).
    /// Any other rank is returned unchanged.
    pub fn transpose2(&self) -> NamedTensor {
        let &[r, c] = self.shape.as_slice() else {
            return self.clone();
        };
        let mut out = vec![0.0f32; self.data.len()];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        NamedTensor::new(vec![c, r], out)
    }
}

/// Where a set of weights came from; decides their default preprocessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    KerasH5,
    TorchPth,
    Safetensors,
    Faceattr,
}

/// All tensors of one checkpoint under canonical names, plus their origin.
#[derive(Debug, Clone)]
pub struct WeightSet {
    pub origin: PathBuf,
    pub format: WeightFormat,
    /// The preprocessing the weights were trained with.
    pub preprocessing: Preprocessing,
    pub tensors: BTreeMap<String, NamedTensor>,
}

impl WeightSet {
    /// Looks a tensor up and checks its shape against `expected` (`None` = any size there).
    pub fn get(
        &self,
        name: &str,
        expected: &[Option<usize>],
    ) -> Result<&NamedTensor, WeightsError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| WeightsError::MissingTensor {
                path: self.origin.clone(),
                tensor: name.to_string(),
            })?;
        let fits = t.shape.len() == expected.len()
            && t.shape
                .iter()
                .zip(expected)
                .all(|(have, want)| want.is_none_or(|w| w == *have));
        if !fits {
            return Err(WeightsError::WrongShape {
                path: self.origin.clone(),
                tensor: name.to_string(),
                expected: format_shape(expected),
                found: format!("{:?}", t.shape),
            });
        }
        if let Some(pos) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(WeightsError::NonFinite {
                path: self.origin.clone(),
                tensor: name.to_string(),
                index: pos,
                value: t.data[pos],
            });
        }
        Ok(t)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

fn format_shape(expected: &[Option<usize>]) -> String {
    let parts: Vec<String> = expected
        .iter()
        .map(|d| d.map_or_else(|| "any".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Reads any supported checkpoint, choosing the importer from the file's content.
/// The readers of the HDF5, zip and safetensors containers are dependencies: a panic inside
/// one on a crafted file becomes [`WeightsError::Malformed`] naming the file.
pub fn load(path: &Path) -> Result<WeightSet, WeightsError> {
    crate::panics::contained(|| load_unguarded(path)).unwrap_or_else(|msg| {
        Err(WeightsError::malformed(
            path,
            "weights",
            format!("the reader failed on this file ({msg})"),
        ))
    })
}

fn load_unguarded(path: &Path) -> Result<WeightSet, WeightsError> {
    let head = read_head(path)?;
    if head.starts_with(b"\x89HDF\r\n\x1a\n") {
        keras_h5::load(path)
    } else if head.starts_with(b"PK\x03\x04") || torch_pth::is_legacy_header(&head) {
        torch_pth::load(path)
    } else if safetensors_import::looks_like_safetensors(&head) {
        safetensors_import::load(path)
    } else {
        Err(WeightsError::UnknownFormat {
            path: path.to_path_buf(),
        })
    }
}

fn read_head(path: &Path) -> Result<Vec<u8>, WeightsError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let mut buf = vec![0u8; 16];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(WeightsError::io(path, e)),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Deflate, the compression zip entries and HDF5 datasets use, expands at most about 1032 to
/// 1: no genuine file's decompressed data is more than this many times its compressed size.
pub(crate) const MAX_DEFLATE_EXPANSION: u64 = 1032;

/// VGG16's 13 convolutions under their Keras layer names: the canonical names of every weight
/// file, and the names `--trainable` and the model use.
pub const CONV_LAYER_NAMES: [&str; 13] = [
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
];

/// torchvision's `features.N` indices of VGG16's 13 convolutions, in Keras layer order.
pub const TORCHVISION_CONV_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

/// Renames a torchvision/timm VGG16 state dict to canonical names; the classifier and
/// anything else that is not part of the convolutional base or our head is dropped.
pub(crate) fn canonical_from_torch(
    raw: BTreeMap<String, NamedTensor>,
) -> BTreeMap<String, NamedTensor> {
    let layer_names = CONV_LAYER_NAMES;
    let mut out = BTreeMap::new();
    for (key, t) in raw {
        let mut parts = key.splitn(3, '.');
        let (a, b, c) = (parts.next(), parts.next(), parts.next());
        let renamed = match (a, b, c) {
            (Some("features"), Some(idx), Some(kind @ ("weight" | "bias"))) => idx
                .parse::<usize>()
                .ok()
                .and_then(|i| TORCHVISION_CONV_INDICES.iter().position(|&v| v == i))
                .map(|pos| (format!("{}.{kind}", layer_names[pos]), t)),
            (Some("head"), Some("fc1"), Some(kind @ ("weight" | "bias"))) => {
                Some((format!("dense.{kind}"), transpose_weight(kind, t)))
            }
            (Some("head"), Some("fc2"), Some(kind @ ("weight" | "bias"))) => {
                Some((format!("dense_1.{kind}"), transpose_weight(kind, t)))
            }
            (Some("head"), Some("bn"), Some(kind)) => match kind {
                "weight" => Some(("batch_normalization.gamma".into(), t)),
                "bias" => Some(("batch_normalization.beta".into(), t)),
                "running_mean" => Some(("batch_normalization.moving_mean".into(), t)),
                "running_var" => Some(("batch_normalization.moving_variance".into(), t)),
                _ => None,
            },
            _ => None,
        };
        if let Some((name, t)) = renamed {
            out.insert(name, t);
        }
    }
    out
}

/// A Linear layer's weight, out x in, as a Dense kernel, in x out. A weight that is not 2-D
/// is left as it is, to be refused with its shape by [`WeightSet::get`].
fn transpose_weight(kind: &str, t: NamedTensor) -> NamedTensor {
    if kind == "weight" && t.shape.len() == 2 {
        t.transpose2()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwio_to_oihw_moves_every_element() {
        let t = NamedTensor::new(vec![2, 3, 4, 5], (0..120).map(|v| v as f32).collect());
        let o = t.hwio_to_oihw();
        assert_eq!(o.shape, vec![5, 4, 2, 3]);
        for h in 0..2 {
            for w in 0..3 {
                for i in 0..4 {
                    for oo in 0..5 {
                        let src = t.data[((h * 3 + w) * 4 + i) * 5 + oo];
                        assert_eq!(o.data[((oo * 4 + i) * 2 + h) * 3 + w], src);
                    }
                }
            }
        }
    }

    #[test]
    fn torch_names_map_to_keras_layers_and_drop_the_classifier() {
        let mut raw = BTreeMap::new();
        raw.insert(
            "features.28.weight".to_string(),
            NamedTensor::new(vec![1], vec![1.0]),
        );
        raw.insert(
            "features.0.bias".to_string(),
            NamedTensor::new(vec![1], vec![2.0]),
        );
        raw.insert(
            "classifier.0.weight".to_string(),
            NamedTensor::new(vec![1], vec![3.0]),
        );
        raw.insert(
            "features.1.weight".to_string(),
            NamedTensor::new(vec![1], vec![4.0]),
        );
        let out = canonical_from_torch(raw);
        let keys: Vec<_> = out.keys().cloned().collect();
        assert_eq!(keys, vec!["block1_conv1.bias", "block5_conv3.weight"]);
    }
}
