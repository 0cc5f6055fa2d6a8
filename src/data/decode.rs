//! Decoding one image file into RGB pixels, by content rather than extension. Every failure
//! names the file and the reason, so a bad image in a dataset can be reported and skipped.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader, RgbImage};

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
}

/// Decodes `path` to 8-bit RGB. Alpha is composited over white; grey becomes RGB.
pub fn decode_rgb(path: &Path, pixel_limit: u64) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|source| DecodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.is_empty() {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    let reader = ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::NotAnImage {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if reader.format().is_none() {
        return Err(DecodeError::NotAnImage {
            path: path.to_path_buf(),
            reason: "unknown format".into(),
        });
    }
    let (width, height) = reader.into_dimensions().map_err(|e| DecodeError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if width as u64 * height as u64 > pixel_limit {
        return Err(DecodeError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit: pixel_limit,
        });
    }
    let reader = ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::NotAnImage {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let img = reader.decode().map_err(|e| DecodeError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(to_rgb_over_white(img))
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
