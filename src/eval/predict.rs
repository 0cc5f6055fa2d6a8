//! Class probabilities for image files, through exactly the decoding and preprocessing the
//! model was trained with (read from its metadata).

use std::path::PathBuf;

use burn::tensor::Device;
use rayon::prelude::*;

use crate::data::decode::{DEFAULT_PIXEL_LIMIT, DecodeError};
use crate::features::InputSpec;
use crate::model::Classifier;
use crate::model::layers::values;

pub struct Prediction {
    pub path: PathBuf,
    /// Sigmoid output per class, in class order; Err if the image could not be read.
    pub probs: Result<Vec<f32>, DecodeError>,
}

impl Prediction {
    /// Index of the predicted class (argmax).
    pub fn label(&self) -> Option<usize> {
        self.probs
            .as_ref()
            .ok()
            .filter(|p| !p.is_empty())
            .map(|p| super::metrics::argmax(p))
    }
}

pub fn input_spec(model: &Classifier) -> InputSpec {
    InputSpec {
        height: model.spec.input_hw.0,
        width: model.spec.input_hw.1,
        preprocessing: model.spec.preprocessing,
        interpolation: model.spec.interpolation,
        pixel_limit: DEFAULT_PIXEL_LIMIT,
    }
}

pub fn predict(
    model: &Classifier,
    paths: &[PathBuf],
    batch: usize,
    device: &Device,
    mut on_done: impl FnMut(usize),
) -> Vec<Prediction> {
    let spec = input_spec(model);
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch.max(1)) {
        let decoded: Vec<_> = chunk.par_iter().map(|p| spec.load(p)).collect();
        let good: Vec<_> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let classes = model.head.classes();
        let mut rows = if good.is_empty() {
            Vec::new()
        } else {
            values(&model.probabilities(spec.batch(&good, device)))
                .chunks(classes)
                .map(<[f32]>::to_vec)
                .collect()
        }
        .into_iter();
        for (path, r) in chunk.iter().zip(decoded) {
            let probs = r.map(|_| rows.next().unwrap_or_default());
            out.push(Prediction {
                path: path.clone(),
                probs,
            });
        }
        on_done(chunk.len());
    }
    out
}
