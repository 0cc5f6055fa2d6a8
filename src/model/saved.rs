//! faceattr's own model file: one safetensors file whose metadata (`__metadata__["faceattr"]`)
//! holds everything `eval` and `predict` need besides the tensors: architecture, input size,
//! class names, preprocessing, interpolation, conventions, which layers trained, the data
//! fingerprint and the faceattr version. Checkpoints add the optimiser's moments under
//! `optimizer/…` and training state in the same metadata; a checkpoint is also a model.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::classifier::{Classifier, ModelSpec};
use crate::weights::{NamedTensor, WeightFormat, WeightSet, WeightsError};

pub const FORMAT_TAG: &str = "faceattr-model/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub format: String,
    pub faceattr_version: String,
    pub architecture: String,
    pub widths: Vec<usize>,
    pub hidden: usize,
    pub spec: ModelSpec,
    /// Layers that were trained (Keras names).
    pub trained_layers: Vec<String>,
    /// Where the base weights came from.
    pub base_weights: String,
    /// A fingerprint of the training data (file list and labels), when trained.
    pub data_fingerprint: Option<String>,
    pub train_images: Option<usize>,
}

impl ModelMeta {
    pub fn new(
        model: &Classifier,
        base_weights: String,
        data_fingerprint: Option<String>,
        train_images: Option<usize>,
    ) -> Self {
        let first = model.spec.trainable.first_conv();
        let mut trained: Vec<String> = super::architecture::CONV_LAYER_NAMES[first..]
            .iter()
            .map(|s| s.to_string())
            .collect();
        trained.extend(["dense", "batch_normalization", "dense_1"].map(String::from));
        ModelMeta {
            format: FORMAT_TAG.into(),
            faceattr_version: env!("CARGO_PKG_VERSION").into(),
            architecture: "vgg16-gap-dense-bn-dense".into(),
            widths: model.base.widths().to_vec(),
            hidden: model.head.hidden(),
            spec: model.spec.clone(),
            trained_layers: trained,
            base_weights,
            data_fingerprint,
            train_images,
        }
    }
}

/// Serialises named f32 tensors plus string metadata to safetensors bytes.
pub fn to_safetensors(
    tensors: &[(String, NamedTensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes: &[u8] = bytemuck::cast_slice(&t.data);
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

/// Saves a model (and optional extra tensors such as optimiser state, and extra metadata).
pub fn save(
    path: &Path,
    model: &Classifier,
    meta: &ModelMeta,
    extra_tensors: Vec<(String, NamedTensor)>,
    extra_meta: Option<String>,
) -> Result<(), WeightsError> {
    let mut tensors = model.base.named_tensors();
    tensors.extend(model.head.named_tensors());
    tensors.extend(extra_tensors);
    let mut md = HashMap::new();
    md.insert(
        "faceattr".to_string(),
        serde_json::to_string(meta).unwrap_or_default(),
    );
    if let Some(s) = extra_meta {
        md.insert("faceattr_training".to_string(), s);
    }
    let bytes = to_safetensors(&tensors, md)
        .map_err(|e| WeightsError::malformed(path, "faceattr model", e))?;
    crate::atomic_file::write(path, &bytes).map_err(|e| WeightsError::io(path, e))
}

/// Largest input side a saved model may ask for (a crafted file must not make every later
/// command allocate gigabytes).
const MAX_INPUT_SIDE: usize = 4096;

/// The metadata checked against what faceattr can run, each problem naming its field: a
/// crafted or damaged file must fail here, not later in a kernel.
fn validate(meta: &ModelMeta) -> Result<(), String> {
    let s = &meta.spec;
    let (h, w) = s.input_hw;
    if !(32..=MAX_INPUT_SIDE).contains(&h) || !(32..=MAX_INPUT_SIDE).contains(&w) {
        return Err(format!(
            "metadata spec.input_hw {h}x{w}: each side must be 32..{MAX_INPUT_SIDE} (VGG16's five pools need 32)"
        ));
    }
    if s.trainable.first_conv() > 13 {
        return Err(format!(
            "metadata spec.trainable: layer {} of VGG16's 13 convolutions",
            s.trainable.first_conv()
        ));
    }
    if s.class_names.len() < 2 {
        return Err(format!(
            "metadata spec.class_names: {} names, a classifier needs at least 2",
            s.class_names.len()
        ));
    }
    if s.class_names.iter().any(|c| c.trim().is_empty()) {
        return Err("metadata spec.class_names: an empty class name".into());
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = s.class_names.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(format!("metadata spec.class_names: '{dup}' twice"));
    }
    if meta.hidden == 0 {
        return Err("metadata hidden: 0 units in the head".into());
    }
    if meta.widths.len() != 13 || meta.widths.contains(&0) {
        return Err(format!(
            "metadata widths {:?}: 13 convolutions of at least 1 channel",
            meta.widths
        ));
    }
    Ok(())
}

/// A model file read back: the classifier, its metadata, any training state.
pub struct LoadedModel {
    pub model: Classifier,
    pub meta: ModelMeta,
    pub training: Option<String>,
    /// Every tensor of the file by name (optimiser state included).
    pub tensors: BTreeMap<String, NamedTensor>,
}

pub fn load(path: &Path, device: &Device) -> Result<LoadedModel, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| WeightsError::io(path, e))?;
    let bad = |reason: String| WeightsError::malformed(path, "faceattr model", reason);
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let md = header.metadata().clone().unwrap_or_default();
    let meta_json = md.get("faceattr").ok_or_else(|| {
        bad("no faceattr metadata: this is not a model saved by faceattr (use a weights file with --weights instead)".into())
    })?;
    let meta: ModelMeta =
        serde_json::from_str(meta_json).map_err(|e| bad(format!("metadata: {e}")))?;
    if meta.format != FORMAT_TAG {
        return Err(bad(format!(
            "format '{}' is not '{FORMAT_TAG}'",
            meta.format
        )));
    }
    validate(&meta).map_err(bad)?;
    let tensors = crate::weights::safetensors_import::read_all(path, &bytes)?;
    let ws = WeightSet {
        origin: PathBuf::from(path),
        format: WeightFormat::Faceattr,
        preprocessing: meta.spec.preprocessing,
        tensors: tensors.clone(),
    };
    if !ws.contains("dense.weight") {
        return Err(bad(
            "no head tensors (dense.weight): a saved model carries its trained head".into(),
        ));
    }
    let model = Classifier::from_weights(&ws, meta.hidden, meta.spec.clone(), 0, device)?;
    if model.head.classes() != meta.spec.class_names.len() {
        return Err(bad(format!(
            "{} outputs but {} class names",
            model.head.classes(),
            meta.spec.class_names.len()
        )));
    }
    Ok(LoadedModel {
        model,
        meta,
        training: md.get("faceattr_training").cloned(),
        tensors,
    })
}
