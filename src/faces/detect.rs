//! A photo in, faces out. The photo is scaled so that its long side is each of the detection
//! sizes in turn (YuNet scores a face that fills the frame low at 640 and high at 320, a small
//! face the other way round), padded with zeros to multiples of 32, run through YuNet, and the
//! candidates of every scale are mapped back to the photo's pixels and merged by one
//! non-maximum suppression.

use image::RgbImage;

use super::decode::{candidates, nms};
use super::yunet::Yunet;
use super::{Face, FaceError};

/// How faces are searched for.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    /// Long side of the photo at each scale, in pixels (largest first is fastest).
    pub sizes: Vec<u32>,
    /// Lowest score kept (OpenCV's default 0.9).
    pub min_score: f32,
    /// IoU above which the lower-scored of two faces is dropped (OpenCV's default 0.3).
    pub nms: f32,
    /// At most this many candidates enter the suppression (OpenCV's default 5000).
    pub top_k: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            sizes: vec![640, 320],
            min_score: 0.9,
            nms: 0.3,
            top_k: 5000,
        }
    }
}

impl DetectOptions {
    pub fn validate(&self) -> Result<(), FaceError> {
        let bad = |m: String| Err(FaceError::Options(m));
        if self.sizes.is_empty() {
            return bad("no detection size given".into());
        }
        if let Some(s) = self.sizes.iter().find(|s| !(32..=4096).contains(*s)) {
            return bad(format!("detection size {s} is outside 32..4096 pixels"));
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            return bad(format!("minimum score {} is outside 0..1", self.min_score));
        }
        if !(0.0..=1.0).contains(&self.nms) {
            return bad(format!("NMS threshold {} is outside 0..1", self.nms));
        }
        Ok(())
    }
}

/// YuNet with its options: cheap to share between threads.
pub struct FaceDetector {
    net: Yunet,
    pub options: DetectOptions,
}

/// The photo scaled for one detection pass.
struct Scaled {
    image: RgbImage,
    /// scaled pixels per photo pixel, per axis
    sx: f32,
    sy: f32,
}

impl FaceDetector {
    pub fn new(net: Yunet, options: DetectOptions) -> Result<Self, FaceError> {
        options.validate()?;
        Ok(FaceDetector { net, options })
    }

    /// The detector built into faceattr.
    pub fn embedded(options: DetectOptions) -> Result<Self, FaceError> {
        Self::new(Yunet::embedded()?, options)
    }

    /// The YuNet ONNX file at `file`, or the embedded one when there is none.
    pub fn open(file: Option<&std::path::Path>, options: DetectOptions) -> Result<Self, FaceError> {
        let net = match file {
            Some(p) => Yunet::from_file(p)?,
            None => Yunet::embedded()?,
        };
        Self::new(net, options)
    }

    /// Where the network came from (the embedded file or a path).
    pub fn net_origin(&self) -> &str {
        self.net.origin()
    }

    /// Every face in `img`, best first, in `img`'s pixels.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>, FaceError> {
        let mut all = Vec::new();
        for scaled in self.scales(img) {
            all.extend(self.candidates_scaled(&scaled)?);
        }
        Ok(nms(all, self.options.nms, self.options.top_k))
    }

    /// The faces YuNet finds in `img` exactly as given (no scaling; only the zero padding),
    /// with the threshold and suppression applied.
    pub fn detect_unscaled(&self, img: &RgbImage) -> Result<Vec<Face>, FaceError> {
        let scaled = Scaled {
            image: img.clone(),
            sx: 1.0,
            sy: 1.0,
        };
        let c = self.candidates_scaled(&scaled)?;
        Ok(nms(c, self.options.nms, self.options.top_k))
    }

    fn candidates_scaled(&self, s: &Scaled) -> Result<Vec<Face>, FaceError> {
        let (input, h, w) = input_tensor(&s.image);
        let raw = self.net.run(&input, h, w)?;
        let mut faces = candidates(&raw, self.options.min_score);
        for f in &mut faces {
            f.bbox = [
                f.bbox[0] / s.sx,
                f.bbox[1] / s.sy,
                f.bbox[2] / s.sx,
                f.bbox[3] / s.sy,
            ];
            for p in &mut f.landmarks {
                *p = [p[0] / s.sx, p[1] / s.sy];
            }
        }
        Ok(faces)
    }

    /// The photo at each detection size, largest first, each reduced from the one before
    /// (one pass over a large photo, not one per size). Sizes that give the same picture are
    /// run once.
    fn scales(&self, img: &RgbImage) -> Vec<Scaled> {
        let mut sizes = self.options.sizes.clone();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let (w, h) = (img.width(), img.height());
        let long = w.max(h) as f64;
        let mut out: Vec<Scaled> = Vec::new();
        for size in sizes {
            let k = size as f64 / long;
            let (tw, th) = (
                ((w as f64 * k).round() as u32).max(1),
                ((h as f64 * k).round() as u32).max(1),
            );
            if out.iter().any(|s| s.image.dimensions() == (tw, th)) {
                continue;
            }
            let from = out
                .last()
                .filter(|s| s.image.width() >= tw && s.image.height() >= th)
                .map_or(img, |s| &s.image);
            let image = if from.dimensions() == (tw, th) {
                from.clone()
            } else {
                crate::preprocess::resample(from, tw, th)
            };
            out.push(Scaled {
                image,
                sx: tw as f32 / w as f32,
                sy: th as f32 / h as f32,
            });
        }
        out
    }
}

/// YuNet's input for `img`: planar BGR floats 0..255, zero-padded at the bottom and right to
/// multiples of 32. Returns the data, the padded height and width.
pub fn input_tensor(img: &RgbImage) -> (Vec<f32>, usize, usize) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (pw, ph) = (w.div_ceil(32) * 32, h.div_ceil(32) * 32);
    let plane = pw * ph;
    let mut data = vec![0.0f32; 3 * plane];
    for (y, row) in img.as_raw().chunks_exact(w * 3).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let o = y * pw + x;
            data[o] = px[2] as f32;
            data[plane + o] = px[1] as f32;
            data[2 * plane + o] = px[0] as f32;
        }
    }
    (data, ph, pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_bgr_planar_and_padded_with_zeros() {
        let img = RgbImage::from_fn(33, 2, |x, y| image::Rgb([x as u8, y as u8, 200]));
        let (data, h, w) = input_tensor(&img);
        assert_eq!((h, w), (32, 64));
        let plane = h * w;
        assert_eq!(data[5], 200.0); // B of (5, 0)
        assert_eq!(data[plane + w + 3], 1.0); // G of (3, 1)
        assert_eq!(data[2 * plane + 32], 32.0); // R of (32, 0)
        assert_eq!(data[33], 0.0); // padding right of the photo
        assert_eq!(data[2 * w], 0.0); // padding below it
    }

    #[test]
    fn options_are_checked() {
        let mut o = DetectOptions::default();
        assert!(o.validate().is_ok());
        o.sizes = vec![0];
        assert!(o.validate().is_err());
        o = DetectOptions {
            min_score: 1.5,
            ..DetectOptions::default()
        };
        assert!(o.validate().is_err());
        o = DetectOptions {
            nms: f32::NAN,
            ..DetectOptions::default()
        };
        assert!(o.validate().is_err());
    }
}
