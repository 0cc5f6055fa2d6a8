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
        let images: Vec<Option<&RgbImage>> = decoded.iter().map(|r| r.as_ref().ok()).collect();
        let rows = spec.rows(&images, device, |x| values(&base.features(x)));
        for ((path, r), row) in chunk.iter().zip(decoded).zip(rows) {
            out.push(ImageFeatures {
                path: path.clone(),
                features: r.map(|_| row.unwrap_or_default()),
            });
        }
        on_done(chunk.len());
    }
    out
}
