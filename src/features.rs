//! Pooled VGG16 features for image files: decode in parallel, resize if needed, preprocess,
//! run the base in batches. A file that cannot be decoded gets its own error; the rest go on.

use std::path::PathBuf;

use burn::tensor::Device;
use image::RgbImage;
use rayon::prelude::*;

use crate::data::decode::DecodeError;
use crate::model::layers::values;
use crate::model::vgg16::Vgg16;
use crate::preprocess::InputSpec;

/// One image's features, or why it could not be read.
pub struct ImageFeatures {
    pub path: PathBuf,
    pub features: Result<Vec<f32>, DecodeError>,
}

/// Features of every path, `batch` images at a time, with an optional progress callback
/// called with the number of images just finished.
pub fn extract(
    base: &Vgg16,
    spec: &InputSpec,
    paths: &[PathBuf],
    batch: usize,
    device: &Device,
    mut on_done: impl FnMut(usize),
) -> Vec<ImageFeatures> {
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch.max(1)) {
        let decoded: Vec<Result<RgbImage, DecodeError>> =
            chunk.par_iter().map(|p| spec.load(p)).collect();
        let good: Vec<RgbImage> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let mut feats = if good.is_empty() {
            Vec::new()
        } else {
            let f = base.features(spec.batch(&good, device));
            let dim = f.dims()[1];
            values(&f).chunks(dim).map(<[f32]>::to_vec).collect()
        }
        .into_iter();
        for (path, r) in chunk.iter().zip(decoded) {
            let features = match r {
                Ok(_) => Ok(feats.next().unwrap_or_default()),
                Err(e) => Err(e),
            };
            out.push(ImageFeatures {
                path: path.clone(),
                features,
            });
        }
        on_done(chunk.len());
    }
    out
}
