//! Turning decoded RGB pixels into network input. Preprocessing belongs to the weights (timm's
//! `pretrained_cfg` idea): Keras' VGG16 expects `caffe` (BGR, mean-subtracted, 0..255),
//! torchvision's and timm's expect `torch` (RGB/255, normalised by ImageNet mean and std).
//! The choice is recorded in every saved model so prediction can never use the wrong one.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::decode::{DecodeError, Decoding, decode_rgb_as};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preprocessing {
    /// Keras `preprocess_input` for VGG16: RGB->BGR, subtract 103.939/116.779/123.68.
    Caffe,
    /// torchvision: RGB/255, mean 0.485/0.456/0.406, std 0.229/0.224/0.225.
    Torch,
}

/// How images not already at the input size are resampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// PIL's NEAREST, Keras' `load_img` default.
    #[default]
    Nearest,
    /// Antialiased bilinear (a triangle filter scaled to the reduction, as PIL's BILINEAR).
    Bilinear,
}

/// How a photo is framed before it is resized to the input: the whole picture, or each face
/// found in it aligned as CelebA's aligned set was. A property of the training data, recorded
/// in every model so that `predict --faces auto` frames new photos the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// The whole image (what any image set gives unless it says otherwise).
    #[default]
    Whole,
    /// Faces aligned as CelebA's aligned set: CelebA from `data celeba`, or `faces align`.
    CelebaAligned,
}

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

    /// The model's rows for a batch of images at the input size, some missing (`None`: not
    /// decoded): the present ones go through `run` as one preprocessed batch, whose output
    /// (`[images, width]` row-major) is split back, one row for each present image. The one way
    /// from decoded images to model outputs for `predict` and `features`.
    pub fn rows(
        &self,
        images: &[Option<&RgbImage>],
        device: &Device,
        run: impl FnOnce(Tensor<4>) -> Vec<f32>,
    ) -> Vec<Option<Vec<f32>>> {
        let present: Vec<&RgbImage> = images.iter().flatten().copied().collect();
        if present.is_empty() {
            return vec![None; images.len()];
        }
        let out = run(self.batch(&present, device));
        let width = out.len() / present.len();
        let mut rows = out.chunks(width.max(1)).map(<[f32]>::to_vec);
        images.iter().map(|i| i.and_then(|_| rows.next())).collect()
    }

    /// A preprocessed NCHW batch from images already at the input size.
    pub fn batch<I: std::borrow::Borrow<RgbImage> + Sync>(
        &self,
        images: &[I],
        device: &Device,
    ) -> Tensor<4> {
        let plane = 3 * self.height * self.width;
        let mut data = vec![0.0f32; images.len() * plane];
        data.par_chunks_mut(plane)
            .zip(images.par_iter())
            .for_each(|(out, img)| self.preprocessing.write_chw(img.borrow(), out));
        Tensor::from_data(
            TensorData::new(data, [images.len(), 3, self.height, self.width]),
            device,
        )
    }
}

const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
const TORCH_MEAN_RGB: [f32; 3] = [0.485, 0.456, 0.406];
const TORCH_STD_RGB: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocessing {
    pub fn name(self) -> &'static str {
        match self {
            Preprocessing::Caffe => "caffe",
            Preprocessing::Torch => "torch",
        }
    }

    /// Value of input channel `c` (network order) for one RGB pixel, computed in f32 exactly
    /// as Keras and torchvision do.
    #[inline]
    pub fn channel(self, rgb: [u8; 3], c: usize) -> f32 {
        match self {
            Preprocessing::Caffe => rgb[2 - c] as f32 - CAFFE_MEAN_BGR[c],
            Preprocessing::Torch => (rgb[c] as f32 / 255.0 - TORCH_MEAN_RGB[c]) / TORCH_STD_RGB[c],
        }
    }

    /// Writes `img` as planar CHW floats into `out` (length 3 * h * w).
    pub fn write_chw(self, img: &RgbImage, out: &mut [f32]) {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let plane = w * h;
        debug_assert_eq!(out.len(), 3 * plane);
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = self.channel(p.0, c);
            }
        }
    }
}

/// Resizes to `width` x `height` with the given interpolation; returns the image itself
/// (no resampling at all) when it already has that size.
pub fn resize(img: RgbImage, width: u32, height: u32, interpolation: Interpolation) -> RgbImage {
    if img.width() == width && img.height() == height {
        return img;
    }
    match interpolation {
        Interpolation::Nearest => resize_nearest_pil(&img, width, height),
        Interpolation::Bilinear => {
            image::imageops::resize(&img, width, height, image::imageops::FilterType::Triangle)
        }
    }
}

/// Antialiased bilinear resampling (Pillow's BILINEAR: a triangle filter widened to the
/// reduction), on SIMD kernels chosen at run time (fast_image_resize): what face detection uses
/// to scale photos, 5-10x faster than the `image` crate's filter on the same work.
pub fn resample(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images};
    let (width, height) = (width.max(1), height.max(1));
    if img.dimensions() == (width, height) {
        return img.clone();
    }
    let fallback =
        || image::imageops::resize(img, width, height, image::imageops::FilterType::Triangle);
    let Ok(src) = images::ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
    else {
        return fallback();
    };
    let mut dst = images::Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    match Resizer::new().resize(&src, &mut dst, &options) {
        Ok(()) => RgbImage::from_raw(width, height, dst.into_vec()).unwrap_or_else(fallback),
        Err(_) => fallback(),
    }
}

/// PIL's nearest neighbour: source index floor((dst + 0.5) * src / dst), clamped.
fn resize_nearest_pil(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = (img.width() as f64, img.height() as f64);
    let xs: Vec<u32> = (0..width)
        .map(|x| (((x as f64 + 0.5) * sw / width as f64) as u32).min(img.width() - 1))
        .collect();
    let mut out = RgbImage::new(width, height);
    for y in 0..height {
        let sy = (((y as f64 + 0.5) * sh / height as f64) as u32).min(img.height() - 1);
        for (x, &sx) in xs.iter().enumerate() {
            out.put_pixel(x as u32, y, *img.get_pixel(sx, sy));
        }
    }
    out
}

/// Parses `218x178` (height x width).
pub fn parse_input_size(s: &str) -> Result<(usize, usize), String> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not HEIGHTxWIDTH, e.g. 218x178"))?;
    let h: usize = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in '{s}'"))?;
    let w: usize = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in '{s}'"))?;
    if h < 32 || w < 32 {
        return Err(format!(
            "input {h}x{w} is too small: VGG16's five pools need at least 32x32"
        ));
    }
    Ok((h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows go back to the images they came from; a missing image gets none and takes none.
    #[test]
    fn rows_skip_missing_images_and_keep_order() {
        let spec = InputSpec {
            height: 2,
            width: 3,
            preprocessing: Preprocessing::Caffe,
            interpolation: Interpolation::Nearest,
            pixel_limit: crate::data::decode::DEFAULT_PIXEL_LIMIT,
            decoding: Default::default(),
        };
        let img = |v: u8| RgbImage::from_pixel(3, 2, image::Rgb([v, v, v]));
        let (a, b) = (img(10), img(200));
        let rows = spec.rows(&[Some(&a), None, Some(&b)], &Device::flex(), |x| {
            // each image's row: its mean red-channel value after preprocessing, and its index
            let v = crate::model::layers::values(&x);
            let plane = 6;
            (0..x.dims()[0])
                .flat_map(|i| [v[i * 3 * plane + 2 * plane], i as f32])
                .collect()
        });
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], Some(vec![10.0 - 123.68, 0.0]));
        assert_eq!(rows[1], None);
        assert_eq!(rows[2], Some(vec![200.0 - 123.68, 1.0]));
        assert_eq!(
            spec.rows(&[None, None], &Device::flex(), |_| Vec::new()),
            vec![None, None]
        );
    }

    #[test]
    fn caffe_flips_to_bgr_and_subtracts_means() {
        let p = Preprocessing::Caffe;
        assert_eq!(p.channel([10, 20, 200], 0), 200.0 - 103.939);
        assert_eq!(p.channel([10, 20, 200], 2), 10.0 - 123.68);
    }

    #[test]
    fn nearest_upscale_repeats_pixels_like_pil() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([1, 1, 1]));
        img.put_pixel(1, 0, image::Rgb([9, 9, 9]));
        let out = resize(img, 4, 1, Interpolation::Nearest);
        let xs: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(xs, vec![1, 1, 9, 9]);
    }

    #[test]
    fn resample_averages_when_reducing_and_keeps_flat_colour() {
        // a 1-pixel checkerboard reduced 4x is grey, not a moire
        let img = RgbImage::from_fn(64, 48, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let small = resample(&img, 16, 12);
        assert_eq!(small.dimensions(), (16, 12));
        assert!(
            small.pixels().all(|p| p.0[0].abs_diff(128) <= 3),
            "{:?}",
            small.get_pixel(5, 5)
        );
        let flat = RgbImage::from_pixel(30, 20, image::Rgb([10, 200, 99]));
        let up = resample(&flat, 77, 41);
        assert!(up.pixels().all(|p| p.0 == [10, 200, 99]));
    }

    #[test]
    fn same_size_is_not_resampled() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let out = resize(img.clone(), 5, 3, Interpolation::Bilinear);
        assert_eq!(out, img);
    }
}
