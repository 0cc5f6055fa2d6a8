//! Class probabilities for image files, through exactly the decoding and preprocessing the
//! model was trained with (read from its metadata).

use std::path::PathBuf;

use burn::tensor::Device;
use image::RgbImage;
use rayon::prelude::*;

use crate::data::bad::BadImage;
use crate::data::decode::{DEFAULT_PIXEL_LIMIT, DecodeError, decode_rgb_as};
use crate::faces::{Face, FaceCrop, FaceCropper};
use crate::model::Classifier;
use crate::model::layers::values;
use crate::preprocess::InputSpec;

pub struct Prediction {
    pub path: PathBuf,
    /// Sigmoid output per class, in class order; Err if the image could not be read.
    pub probs: Result<Vec<f32>, DecodeError>,
    /// The logits the probabilities come from (empty when the image could not be read).
    pub logits: Vec<f32>,
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

/// `{class: probability}` in class order.
pub fn probs_json(classes: &[String], probs: &[f32]) -> serde_json::Value {
    classes
        .iter()
        .zip(probs)
        .map(|(c, v)| (c.clone(), serde_json::json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// One face as `predict --json` and the service print it:
/// `{"box","score","landmarks","label","probs"}`.
pub fn face_json(classes: &[String], face: &Face, probs: &[f32]) -> serde_json::Value {
    let label = super::metrics::argmax(probs);
    serde_json::json!({
        "box": face.bbox, "score": face.score, "landmarks": face.landmarks,
        "label": classes.get(label), "probs": probs_json(classes, probs),
    })
}

/// A whole image as `predict --json` prints it: `{"path","label","probs"}`.
pub fn whole_json(path: &str, classes: &[String], probs: &[f32]) -> serde_json::Value {
    let label = super::metrics::argmax(probs);
    serde_json::json!({"path": path, "label": classes.get(label), "probs": probs_json(classes, probs)})
}

/// How photos are framed for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FacesMode {
    /// Detect and align faces when the model was trained on aligned faces, else whole images.
    Auto,
    /// Detect every face, align it as CelebA's aligned set, classify each.
    Detect,
    /// The whole image, resized to the model's input.
    Whole,
}

impl FacesMode {
    /// Whether faces are detected for a model trained on images framed as `framing`.
    pub fn detects(self, framing: crate::preprocess::Framing) -> bool {
        match self {
            FacesMode::Auto => framing == crate::preprocess::Framing::CelebaAligned,
            FacesMode::Detect => true,
            FacesMode::Whole => false,
        }
    }

    /// `auto`, `detect` or `whole`, as on the command line and in the service's query.
    pub fn parse(s: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(s, false).ok()
    }

    pub fn name(self) -> &'static str {
        match self {
            FacesMode::Auto => "auto",
            FacesMode::Detect => "detect",
            FacesMode::Whole => "whole",
        }
    }
}

pub fn input_spec(model: &Classifier) -> InputSpec {
    InputSpec {
        height: model.spec.input_hw.0,
        width: model.spec.input_hw.1,
        preprocessing: model.spec.preprocessing,
        interpolation: model.spec.interpolation,
        pixel_limit: DEFAULT_PIXEL_LIMIT,
        decoding: model.spec.decoding,
    }
}

pub fn predict(
    model: &Classifier,
    paths: &[PathBuf],
    batch: usize,
    device: &Device,
    mut on_done: impl FnMut(usize),
) -> Vec<Prediction> {
    let mut out = Vec::with_capacity(paths.len());
    predict_batches(model, paths, batch, false, device, |b| {
        on_done(b.predictions.len());
        out.extend(b.predictions);
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    out
}

/// One batch of [`predict_batches`]: its predictions and the images they came from, each
/// decoded once (`None` where it could not be read).
pub struct PredictedBatch {
    pub predictions: Vec<Prediction>,
    /// At the model's input size, as the model saw them (for Grad-CAM).
    pub framed: Vec<Option<RgbImage>>,
    /// As decoded, before resizing (empty unless asked for; for annotated copies).
    pub originals: Vec<Option<RgbImage>>,
}

/// [`predict`] a batch at a time, handing each batch to `on_batch` with its decoded images, so
/// that Grad-CAM and annotated copies need no second decode. Stops at `on_batch`'s first error.
pub fn predict_batches<E>(
    model: &Classifier,
    paths: &[PathBuf],
    batch: usize,
    keep_originals: bool,
    device: &Device,
    mut on_batch: impl FnMut(PredictedBatch) -> Result<(), E>,
) -> Result<(), E> {
    let spec = input_spec(model);
    for chunk in paths.chunks(batch.max(1)) {
        let decoded: Vec<Result<(RgbImage, Option<RgbImage>), DecodeError>> = chunk
            .par_iter()
            .map(|p| {
                let img = decode_rgb_as(p, spec.pixel_limit, spec.decoding)?;
                let original = keep_originals.then(|| img.clone());
                Ok((spec.frame_whole(img), original))
            })
            .collect();
        let framed: Vec<Option<&RgbImage>> = decoded
            .iter()
            .map(|r| r.as_ref().ok().map(|(framed, _)| framed))
            .collect();
        let mut rows = spec
            .rows(&framed, device, |x| values(&model.logits(x)))
            .into_iter();
        let mut out = PredictedBatch {
            predictions: Vec::with_capacity(chunk.len()),
            framed: Vec::with_capacity(chunk.len()),
            originals: Vec::new(),
        };
        for (path, r) in chunk.iter().zip(decoded) {
            let row = rows.next().flatten();
            let (probs, logits, framed, original) = match r {
                Ok((framed, original)) => {
                    let logits = row.unwrap_or_default();
                    (
                        Ok(super::metrics::sigmoid(&logits)),
                        logits,
                        Some(framed),
                        original,
                    )
                }
                Err(e) => (Err(e), Vec::new(), None, None),
            };
            out.predictions.push(Prediction {
                path: path.clone(),
                probs,
                logits,
            });
            out.framed.push(framed);
            if keep_originals {
                out.originals.push(original);
            }
        }
        on_batch(out)?;
    }
    Ok(())
}

/// One face of a photo and the model's probabilities for it.
#[derive(Debug, Clone)]
pub struct FacePrediction {
    pub face: Face,
    pub probs: Vec<f32>,
    /// The logits the probabilities come from.
    pub logits: Vec<f32>,
}

impl FacePrediction {
    pub fn label(&self) -> usize {
        super::metrics::argmax(&self.probs)
    }
}

/// A photo's faces with their predictions (none when no face was found).
#[derive(Debug, Clone)]
pub struct PhotoFaces {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FacePrediction>,
}

impl PhotoFaces {
    /// The largest face's prediction: the photo's answer when one answer is needed (eval).
    pub fn largest(&self) -> Option<&FacePrediction> {
        self.faces
            .iter()
            .max_by(|a, b| a.face.area().total_cmp(&b.face.area()))
    }
}

/// A photo, and what was found in it or why it could not be used.
#[derive(Debug, Clone)]
pub struct PhotoPrediction {
    pub path: PathBuf,
    pub result: Result<PhotoFaces, BadImage>,
}

/// What a caller may do with each photo while it is still in memory (draw it, explain it).
pub struct PhotoView<'a> {
    pub prediction: &'a PhotoPrediction,
    /// None when the photo could not be used.
    pub photo: Option<&'a RgbImage>,
    pub crops: &'a [FaceCrop],
}

/// Detects, aligns and classifies every face of each photo, `batch` photos decoded at once.
/// `on_photo` sees each photo in input order (with its pixels and crops when it could be
/// used) before they are dropped.
pub fn predict_faces(
    model: &Classifier,
    cropper: &FaceCropper,
    paths: &[PathBuf],
    batch: usize,
    device: &Device,
    mut on_photo: impl FnMut(PhotoView<'_>),
) -> Vec<PhotoPrediction> {
    let spec = input_spec(model);
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch.max(1)) {
        let framed: Vec<Result<(RgbImage, Vec<FaceCrop>), BadImage>> = chunk
            .par_iter()
            .map(|p| {
                let photo = decode_rgb_as(p, spec.pixel_limit, spec.decoding)
                    .map_err(|e| BadImage::from(&e))?;
                let crops = cropper.crops(&photo).map_err(|e| BadImage {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                Ok((photo, crops))
            })
            .collect();
        let images: Vec<Option<&RgbImage>> = framed
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|(_, crops)| crops.iter().map(|c| Some(&c.image)))
            .collect();
        let mut rows = Vec::with_capacity(images.len());
        for part in images.chunks(batch.max(1)) {
            let logits = spec.rows(part, device, |x| values(&model.logits(x)));
            rows.extend(logits.into_iter().flatten());
        }
        let mut rows = rows.into_iter();
        for (path, r) in chunk.iter().zip(framed) {
            let (prediction, kept) = match r {
                Ok((photo, crops)) => {
                    let faces = crops
                        .iter()
                        .map(|c| {
                            let logits = rows.next().unwrap_or_default();
                            FacePrediction {
                                face: c.face,
                                probs: super::metrics::sigmoid(&logits),
                                logits,
                            }
                        })
                        .collect();
                    let p = PhotoPrediction {
                        path: path.clone(),
                        result: Ok(PhotoFaces {
                            width: photo.width(),
                            height: photo.height(),
                            faces,
                        }),
                    };
                    (p, Some((photo, crops)))
                }
                Err(bad) => (
                    PhotoPrediction {
                        path: path.clone(),
                        result: Err(bad),
                    },
                    None,
                ),
            };
            on_photo(PhotoView {
                prediction: &prediction,
                photo: kept.as_ref().map(|k| &k.0),
                crops: kept.as_ref().map_or(&[], |k| &k.1),
            });
            out.push(prediction);
        }
    }
    out
}
