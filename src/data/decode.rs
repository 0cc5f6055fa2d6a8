//! Decoding one image file into RGB pixels, by content rather than extension. Every failure
//! names the file and the reason, so a bad image in a dataset can be reported and skipped.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, RgbImage};

/// How pixels are read from a file where faceattr and Keras differ, on purpose.
///
/// faceattr applies the EXIF orientation (a phone photo taken upright is upright) and
/// composites transparency over white (a transparent background becomes white, not the
/// colours hidden under alpha 0). Keras' `load_img` does neither: Pillow's
/// `convert("RGB")` drops the alpha channel and keeps the stored orientation. `Keras`
/// reproduces that where faithfulness to a Keras run matters (`train --decoding keras`,
/// recorded in the model so that `eval`, `predict` and `serve` decode the same way).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    /// EXIF orientation applied, alpha composited over white.
    #[default]
    Faceattr,
    /// As Keras' `load_img`: EXIF orientation ignored, alpha dropped.
    Keras,
}

/// Default guard against decompression bombs: 50 megapixels.
pub const DEFAULT_PIXEL_LIMIT: u64 = 50_000_000;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
    #[error("{path}: not an image faceattr can decode ({reason})")]
    NotAnImage { path: PathBuf, reason: String },
    #[error("{path}: {width}x{height} pixels is over the limit of {limit} pixels")]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        limit: u64,
    },
    #[error("{path}: corrupt or truncated image: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The file ends before the image does (a JPEG the decoder would fill with grey).
    #[error("{path}: truncated: {reason}")]
    Truncated { path: PathBuf, reason: String },
}

/// Decodes `path` to 8-bit RGB: EXIF orientation applied, alpha composited over white,
/// grey expanded, 16-bit reduced. The pixel limit is checked from the header, before any
/// pixel buffer is allocated.
pub fn decode_rgb(path: &Path, pixel_limit: u64) -> Result<RgbImage, DecodeError> {
    decode_rgb_as(path, pixel_limit, Decoding::Faceattr)
}

/// As [`decode_rgb`], orientation and alpha handled as `decoding` says.
pub fn decode_rgb_as(
    path: &Path,
    pixel_limit: u64,
    decoding: Decoding,
) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes_as(path, &bytes, pixel_limit, decoding)
}

/// As [`decode_rgb`], from bytes already read; `path` is only used in messages. A decoder
/// that panics on a crafted file gives [`DecodeError::Corrupt`].
pub fn decode_bytes(path: &Path, bytes: &[u8], pixel_limit: u64) -> Result<RgbImage, DecodeError> {
    decode_bytes_as(path, bytes, pixel_limit, Decoding::Faceattr)
}

/// As [`decode_bytes`], orientation and alpha handled as `decoding` says.
pub fn decode_bytes_as(
    path: &Path,
    bytes: &[u8],
    pixel_limit: u64,
    decoding: Decoding,
) -> Result<RgbImage, DecodeError> {
    let run = || decode_unguarded(path, bytes, pixel_limit, decoding);
    crate::panics::contained(run).unwrap_or_else(|msg| {
        Err(DecodeError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("the decoder failed on this file ({msg})"),
        })
    })
}

fn decode_unguarded(
    path: &Path,
    bytes: &[u8],
    pixel_limit: u64,
    decoding: Decoding,
) -> Result<RgbImage, DecodeError> {
    use image::ImageDecoder;
    if bytes.is_empty() {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    let not_image = |reason: String| DecodeError::NotAnImage {
        path: path.to_path_buf(),
        reason,
    };
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| not_image(e.to_string()))?;
    // What a decoder may allocate follows from the pixel limit, not from the file's header (a
    // TIFF declaring 5 144 bits a sample once asked for 266 MB for 40x32 pixels): 8 bytes a
    // pixel (16-bit RGBA), plus room for a decoder's working buffers.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(pixel_limit.saturating_mul(8).saturating_add(16 << 20));
    reader.limits(limits);
    let Some(format) = reader.format() else {
        return Err(not_image("unknown format".into()));
    };
    if format == image::ImageFormat::Tiff {
        super::tiff_tags::check(bytes).map_err(|reason| DecodeError::Corrupt {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > pixel_limit {
        return Err(DecodeError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit: pixel_limit,
        });
    }
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt {
            path: path.to_path_buf(),
            reason: "zero-sized image".into(),
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    // The JPEG decoder fills a file cut short with grey and succeeds: check the data reached
    // its end (other formats' decoders already fail on missing pixel data).
    if format == image::ImageFormat::Jpeg {
        super::jpeg_end::check(bytes).map_err(|reason| DecodeError::Truncated {
            path: path.to_path_buf(),
            reason,
        })?;
    }
    Ok(match decoding {
        Decoding::Faceattr => {
            img.apply_orientation(orientation);
            to_rgb_over_white(img)
        }
        Decoding::Keras => img.to_rgb8(),
    })
}

impl DecodeError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            DecodeError::Io { path, .. }
            | DecodeError::Empty { path }
            | DecodeError::NotAnImage { path, .. }
            | DecodeError::TooLarge { path, .. }
            | DecodeError::Corrupt { path, .. }
            | DecodeError::Truncated { path, .. } => path,
        }
    }

    /// The reason alone, without the path, on one line (for tables and CSV).
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.path().display());
        let reason = full.strip_prefix(&prefix).unwrap_or(&full);
        reason.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

fn to_rgb_over_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as u32;
        let blend = |c: u8| ((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}
