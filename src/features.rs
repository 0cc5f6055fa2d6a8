//! Pooled VGG16 features for image files: decode in parallel, resize if needed, preprocess,
//! run the base in batches. A file that cannot be decoded gets its own error; the rest go on.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use crate::data::decode::{DecodeError, Decoding, decode_rgb_as};
use crate::model::layers::values;
use crate::model::vgg16::Vgg16;
use crate::preprocess::{Interpolation, Preprocessing, resize};

/// How images become input tensors.
#[derive(Debug, Clone, Copy)]
pub struct InputSpec {
    pub height: usize,
    pub width: usize,
    pub preprocessing: Preprocessing,
    pub interpolation: Interpolation,
    pub pixel_limit: u64,
    /// EXIF orientation and alpha: faceattr's way or Keras'.
    pub decoding: Decoding,
}

impl InputSpec {
    /// Decodes and resizes one file.
    pub fn load(&self, path: &Path) -> Result<RgbImage, DecodeError> {
        Ok(self.frame_whole(decode_rgb_as(path, self.pixel_limit, self.decoding)?))
    }

    /// A decoded image, whole, at the input size.
    pub fn frame_whole(&self, img: RgbImage) -> RgbImage {
        resize(
            img,
            self.width as u32,
            self.height as u32,
            self.interpolation,
        )
    }

    /// A preprocessed NCHW batch from images already at the input size.
    pub fn batch(&self, images: &[RgbImage], device: &Device) -> Tensor<4> {
        let plane = 3 * self.height * self.width;
        let mut data = vec![0.0f32; images.len() * plane];
        data.par_chunks_mut(plane)
            .zip(images.par_iter())
            .for_each(|(out, img)| self.preprocessing.write_chw(img, out));
        Tensor::from_data(
            TensorData::new(data, [images.len(), 3, self.height, self.width]),
            device,
        )
    }
}

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
