//! `faces align`: a folder of ordinary photos (class folders, a CSV manifest, or just images)
//! turned into a training set framed like CelebA's aligned crops. Each photo is decoded,
//! its faces found and aligned, and the crops written under the same relative path (so class
//! folders are kept); `faces.csv` lists every crop with its source and box, `skipped.csv` every
//! photo that gave none and why, and `faceattr-dataset.json` marks the set as aligned.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use super::{FaceCropper, Multiple};
use crate::data::DataError;
use crate::data::bad::{BadImage, BadImagePolicy};
use crate::data::decode::decode_rgb;
use crate::data::framing::{self, DatasetInfo};
use crate::preprocess::Framing;

/// Files faceattr writes into a dataset folder: never taken for photos.
const OWN_FILES: [&str; 3] = [framing::MARKER, "faces.csv", "skipped.csv"];
/// Photos decoded at once (bounds memory with 24-megapixel photos).
const CHUNK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CropFormat {
    /// JPEG at quality 95 (as CelebA's own aligned files are JPEG).
    Jpg,
    /// PNG, lossless.
    Png,
}

impl CropFormat {
    fn extension(self) -> &'static str {
        match self {
            CropFormat::Jpg => "jpg",
            CropFormat::Png => "png",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AlignSetOptions {
    pub multiple: Multiple,
    pub format: CropFormat,
    pub on_bad_image: BadImagePolicy,
    pub pixel_limit: u64,
}

/// One photo to align: where it is, and where its crops go (relative, without extension).
#[derive(Debug, Clone)]
struct Job {
    source: PathBuf,
    label: Option<String>,
    stem: PathBuf,
}

/// One written crop (a row of `faces.csv`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CropRow {
    pub source: PathBuf,
    pub label: String,
    pub face: usize,
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
    pub output: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlignSetReport {
    pub photos: usize,
    pub crops: Vec<CropRow>,
    /// Photos that gave no crop, with the reason (unreadable, no face, several faces).
    pub skipped: Vec<BadImage>,
    pub out: PathBuf,
}

/// The photos of `src`: a folder (every image under it, relative paths kept) or a CSV
/// manifest (each photo into a folder named by its label).
fn jobs(src: &Path) -> Result<Vec<Job>, DataError> {
    if src.is_dir() {
        let files = crate::data::folder::files_under(src)?;
        Ok(files
            .into_iter()
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !OWN_FILES.contains(&name)
            })
            .map(|p| {
                let rel = p.strip_prefix(src).unwrap_or(&p).to_path_buf();
                let label = (rel.components().count() > 1)
                    .then(|| rel.components().next())
                    .flatten()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned());
                Job {
                    stem: rel.with_extension(""),
                    source: p,
                    label,
                }
            })
            .collect())
    } else if src.is_file() {
        let set = crate::data::manifest::read(src)?;
        let mut taken = std::collections::HashSet::new();
        Ok(set
            .samples
            .iter()
            .map(|s| {
                let class = &set.classes[s.label];
                let base = s
                    .path
                    .file_stem()
                    .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
                let mut stem = Path::new(class).join(&base);
                let mut n = 2;
                while !taken.insert(stem.clone()) {
                    stem = Path::new(class).join(format!("{base}-{n}"));
                    n += 1;
                }
                Job {
                    source: s.path.clone(),
                    label: Some(class.clone()),
                    stem,
                }
            })
            .collect())
    } else {
        Err(DataError::NotFound(src.to_path_buf()))
    }
}

/// What one photo gave.
enum Outcome {
    Crops(Vec<CropRow>),
    Skipped(BadImage),
}

pub fn align_set(
    src: &Path,
    out: &Path,
    cropper: &FaceCropper,
    opts: &AlignSetOptions,
    on_start: impl FnOnce(usize),
    on_done: impl Fn(usize) + Sync,
) -> Result<AlignSetReport, DataError> {
    let jobs = jobs(src)?;
    on_start(jobs.len());
    std::fs::create_dir_all(out).map_err(|source| DataError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let stop = AtomicBool::new(false);
    let mut crops = Vec::new();
    let mut skipped = Vec::new();
    for chunk in jobs.chunks(CHUNK) {
        let results: Vec<Result<Outcome, DataError>> = chunk
            .par_iter()
            .map(|job| {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Outcome::Skipped(BadImage {
                        path: job.source.clone(),
                        reason: "not reached: the run stopped at a bad image".into(),
                    }));
                }
                let r = one_photo(job, out, cropper, opts);
                if r.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                on_done(1);
                r
            })
            .collect();
        for r in results {
            match r? {
                Outcome::Crops(rows) => crops.extend(rows),
                Outcome::Skipped(b) => skipped.push(b),
            }
        }
    }
    let report = AlignSetReport {
        photos: jobs.len(),
        crops,
        skipped,
        out: out.to_path_buf(),
    };
    write_faces_csv(&out.join("faces.csv"), &report.crops)?;
    crate::data::bad::write_csv(&out.join("skipped.csv"), &report.skipped)?;
    let t = &cropper.template;
    framing::write(
        out,
        &DatasetInfo {
            framing: Framing::CelebaAligned,
            size_hw: Some((t.height, t.width)),
            made_by: format!("faceattr {} faces align", env!("CARGO_PKG_VERSION")),
            details: serde_json::json!({
                "source": src,
                "multiple": opts.multiple,
                "detector": cropper.detector.net_origin(),
                "detect_sizes": cropper.detector.options.sizes,
                "min_score": cropper.detector.options.min_score,
                "nms": cropper.detector.options.nms,
                "photos": report.photos,
                "crops": report.crops.len(),
                "skipped": report.skipped.len(),
            }),
        },
    )?;
    Ok(report)
}

fn one_photo(
    job: &Job,
    out: &Path,
    cropper: &FaceCropper,
    opts: &AlignSetOptions,
) -> Result<Outcome, DataError> {
    let skip = |reason: String| {
        Ok(Outcome::Skipped(BadImage {
            path: job.source.clone(),
            reason,
        }))
    };
    let photo = match decode_rgb(&job.source, opts.pixel_limit) {
        Ok(p) => p,
        Err(e) if opts.on_bad_image == BadImagePolicy::Fail => return Err(DataError::BadImage(e)),
        Err(e) => return skip(e.reason()),
    };
    let faces = match cropper.detector.detect(&photo) {
        Ok(f) => f,
        Err(e) => return skip(e.to_string()),
    };
    let chosen = match opts.multiple.choose(faces) {
        Ok(c) => c,
        Err(reason) => return skip(reason),
    };
    let several = chosen.len() > 1;
    let mut rows = Vec::with_capacity(chosen.len());
    for (i, face) in chosen.into_iter().enumerate() {
        let crop = cropper.crop(&photo, face);
        let name = if several {
            let base = job
                .stem
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            job.stem
                .with_file_name(format!("{}_face{i}", base.unwrap_or_default()))
        } else {
            job.stem.clone()
        };
        let rel = name.with_extension(opts.format.extension());
        let path = out.join(&rel);
        write_crop(&path, &crop.image, opts.format)?;
        rows.push(CropRow {
            source: job.source.clone(),
            label: job.label.clone().unwrap_or_default(),
            face: i,
            x: face.bbox[0],
            y: face.bbox[1],
            width: face.bbox[2],
            height: face.bbox[3],
            score: face.score,
            output: rel,
        });
    }
    Ok(Outcome::Crops(rows))
}

/// Encodes to a temporary file beside `path`, then renames: a crash never leaves a
/// half-written image in the set.
fn write_crop(path: &Path, img: &RgbImage, format: CropFormat) -> Result<(), DataError> {
    let io = |source: std::io::Error| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    let encoded = match format {
        CropFormat::Jpg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95).encode_image(img)
        }
        CropFormat::Png => img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        ),
    };
    encoded.map_err(|e| DataError::Invalid {
        path: path.to_path_buf(),
        reason: format!("encoding the crop: {e}"),
    })?;
    // Whole or absent (a full disk leaves no partial crop); not fsynced: a crop is cheap to
    // redo, and an fsync per crop would dominate the run.
    crate::atomic_file::write_unsynced(path, &bytes).map_err(io)
}

fn write_faces_csv(path: &Path, rows: &[CropRow]) -> Result<(), DataError> {
    let err = |e: csv::Error| DataError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    if rows.is_empty() {
        w.write_record([
            "source", "label", "face", "x", "y", "width", "height", "score", "output",
        ])
        .map_err(err)?;
    }
    let bytes = w.into_inner().map_err(|e| DataError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::atomic_file::write(path, &bytes).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
