//! Faces in ordinary photos: find each one (YuNet, embedded), align it exactly as CelebA's
//! aligned set was made, and draw what was found. This is what lets a model trained on
//! CelebA's 178 x 218 crops be used on a portrait, a group photo or a phone picture.
//!
//! - [`yunet`]: the detector network itself (the embedded ONNX file, run by tract).
//! - [`decode`]: YuNet's per-cell outputs into scored faces, and non-maximum suppression.
//! - [`detect`]: a photo in, faces out, in the photo's pixels, over several scales.
//! - [`align`]: the CelebA template, the similarity fit and the bicubic warp.
//! - [`annotate`]: boxes, landmarks and labels drawn onto a copy of the photo.
//! - [`align_set`]: `faces align` over a whole dataset, with `faces.csv`.

pub mod align;
pub mod align_set;
pub mod annotate;
pub mod decode;
pub mod detect;
pub mod yunet;

use serde::{Deserialize, Serialize};

pub use align::{AlignTemplate, align_face};
pub use detect::{DetectOptions, FaceDetector};

use image::RgbImage;

/// One face found in a photo, in that photo's pixels (continuous coordinates: pixel `i`
/// covers `[i, i + 1)`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// Left, top, width, height.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// sqrt(classification x objectness), 0..1.
    pub score: f32,
    /// YuNet's five points: right eye, left eye, nose tip, right mouth corner, left mouth
    /// corner, the person's right first (so, for a frontal face, the one on the image's left).
    pub landmarks: [[f32; 2]; 5],
}

impl Face {
    pub fn area(&self) -> f32 {
        self.bbox[2].max(0.0) * self.bbox[3].max(0.0)
    }

    /// Intersection over union of the two boxes.
    pub fn iou(&self, other: &Face) -> f32 {
        let [ax, ay, aw, ah] = self.bbox;
        let [bx, by, bw, bh] = other.bbox;
        let iw = ((ax + aw).min(bx + bw) - ax.max(bx)).max(0.0);
        let ih = ((ay + ah).min(by + bh) - ay.max(by)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    #[error("{origin}: not a usable face detector: {reason}")]
    Model { origin: String, reason: String },
    #[error("face detector failed on a {height}x{width} input: {reason}")]
    Run {
        height: usize,
        width: usize,
        reason: String,
    },
    #[error("{0}")]
    Options(String),
}

/// Which faces of a photo with several to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Multiple {
    /// The largest face only.
    #[default]
    Largest,
    /// Every face.
    All,
    /// None: the photo is listed as skipped.
    Skip,
}

impl Multiple {
    /// The faces to use from `faces` (best score first), or why none are used.
    pub fn choose(self, faces: Vec<Face>) -> Result<Vec<Face>, String> {
        match (self, faces.len()) {
            (_, 0) => Err("no face found".into()),
            (Multiple::All, _) | (_, 1) => Ok(faces),
            (Multiple::Skip, n) => Err(format!("{n} faces (--multiple skip)")),
            (Multiple::Largest, _) => Ok(faces
                .into_iter()
                .max_by(|a, b| a.area().total_cmp(&b.area()))
                .into_iter()
                .collect()),
        }
    }
}

/// A face and its aligned crop.
#[derive(Debug, Clone)]
pub struct FaceCrop {
    pub face: Face,
    pub image: RgbImage,
}

/// The detector and the template together: a photo in, aligned crops out. What `predict`,
/// `eval` and `faces align` all use, so a face is framed the same way everywhere.
pub struct FaceCropper {
    pub detector: FaceDetector,
    pub template: AlignTemplate,
}

impl FaceCropper {
    /// Every face of `photo`, best score first, each with its aligned crop.
    pub fn crops(&self, photo: &RgbImage) -> Result<Vec<FaceCrop>, FaceError> {
        Ok(self
            .detector
            .detect(photo)?
            .into_iter()
            .map(|face| self.crop(photo, face))
            .collect())
    }

    pub fn crop(&self, photo: &RgbImage, face: Face) -> FaceCrop {
        FaceCrop {
            face,
            image: align_face(photo, &face, &self.template),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(w: f32, score: f32) -> Face {
        Face {
            bbox: [0.0, 0.0, w, w],
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn multiple_policies() {
        let faces = vec![face(10.0, 0.99), face(30.0, 0.91), face(20.0, 0.95)];
        let largest = Multiple::Largest.choose(faces.clone()).expect("a face");
        assert_eq!(largest, vec![face(30.0, 0.91)]);
        assert_eq!(Multiple::All.choose(faces.clone()).expect("faces").len(), 3);
        assert_eq!(
            Multiple::Skip.choose(faces).expect_err("skipped"),
            "3 faces (--multiple skip)"
        );
        assert_eq!(
            Multiple::Skip
                .choose(vec![face(5.0, 0.9)])
                .expect("one")
                .len(),
            1
        );
        assert_eq!(
            Multiple::All.choose(vec![]).expect_err("none"),
            "no face found"
        );
    }

    #[test]
    fn iou_of_boxes() {
        let a = face(10.0, 1.0);
        let mut b = a;
        b.bbox[0] = 5.0;
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&a), 1.0);
    }
}
