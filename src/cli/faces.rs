//! `faceattr faces detect|align`, and the detector options `predict` and `eval` share.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::data::bad::BadImagePolicy;
use crate::data::decode::{DEFAULT_PIXEL_LIMIT, decode_rgb};
use crate::faces::align_set::{AlignSetOptions, CropFormat, align_set};
use crate::faces::annotate::{Mark, annotate};
use crate::faces::{AlignTemplate, DetectOptions, FaceCropper, FaceDetector, Multiple};

#[derive(Subcommand, Debug)]
pub enum FacesCommand {
    /// Find every face: box, score and five landmarks (eyes, nose tip, mouth corners).
    #[command(after_help = "Examples:
  faceattr faces detect group.jpg
  faceattr faces detect --json --annotate out/ photos/
  faceattr faces detect --detect-size 1280,640,320 --min-score 0.8 crowd.jpg

JSON lines: {\"path\",\"width\",\"height\",\"faces\":[{\"box\":[x,y,w,h],\"score\",\"landmarks\":[[x,y],...]}]}
in the photo's pixels; landmarks in YuNet's order: right eye, left eye, nose tip, right and
left mouth corner (the person's right first: for a frontal face, the one on the image's left).")]
    Detect(DetectArgs),
    /// Turn photos into a training set framed like CelebA's aligned crops (178 x 218).
    #[command(after_help = "Examples:
  faceattr faces align --out aligned/train photos/train
  faceattr faces align --out aligned --multiple all --format png party-photos/
  faceattr faces align --out aligned/test test.csv

SRC is a class-folder tree (the class folders are kept), a CSV manifest (path,label: one folder
per label) or a folder of photos. Writes the crops, faces.csv (source, label, face index, box,
score, output), skipped.csv (photos that gave no crop, with the reason) and
faceattr-dataset.json, which tells `faceattr train` that the set is aligned; the model it trains
then detects and aligns faces in `faceattr predict` by itself.")]
    Align(AlignArgs),
}

/// How faces are searched for (shared by `faces`, `predict` and `eval`).
#[derive(Args, Debug, Clone)]
pub struct DetectorArgs {
    /// A YuNet ONNX file to use instead of the one built into faceattr.
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// Long side of the photo, in pixels, at each detection scale (comma-separated). Faces of
    /// every scale are merged: 640 finds small faces, 320 faces that fill the frame.
    #[arg(long, value_delimiter = ',', default_values_t = [640u32, 320])]
    pub detect_size: Vec<u32>,
    /// Lowest detector score kept (OpenCV's default).
    #[arg(long, default_value_t = 0.9)]
    pub min_score: f32,
    /// Overlap (IoU) above which the lower-scored of two faces is dropped.
    #[arg(long, default_value_t = 0.3)]
    pub nms: f32,
}

impl DetectorArgs {
    pub fn detector(&self) -> anyhow::Result<FaceDetector> {
        Ok(FaceDetector::open(
            self.detector.as_deref(),
            DetectOptions {
                sizes: self.detect_size.clone(),
                min_score: self.min_score,
                nms: self.nms,
                ..DetectOptions::default()
            },
        )?)
    }

    /// The detector with CelebA's template at a crop size (height, width).
    pub fn cropper(&self, size_hw: (usize, usize)) -> anyhow::Result<FaceCropper> {
        Ok(FaceCropper {
            detector: self.detector()?,
            template: AlignTemplate::for_size(size_hw.0, size_hw.1),
        })
    }
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// JSON lines, one per photo.
    #[arg(long)]
    pub json: bool,
    /// Write a copy of each photo with its faces boxed and landmarks dotted into this folder.
    #[arg(long)]
    pub annotate: Option<PathBuf>,
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// Photos or folders (searched recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AlignArgs {
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Photos with several faces: the largest face, every face (`<name>_face<i>`), or none.
    #[arg(long, value_enum, default_value_t = Multiple::Largest)]
    pub multiple: Multiple,
    /// Crop size HEIGHTxWIDTH; other sizes than CelebA's scale its template.
    #[arg(long, default_value = "218x178", value_parser = crate::preprocess::parse_input_size)]
    pub size: (usize, usize),
    #[arg(long, value_enum, default_value_t = CropFormat::Jpg)]
    pub format: CropFormat,
    /// An unreadable photo: list it in skipped.csv and go on, or stop.
    #[arg(long, value_enum, default_value_t = BadImagePolicy::Skip)]
    pub on_bad_image: BadImagePolicy,
    #[arg(long, default_value_t = DEFAULT_PIXEL_LIMIT)]
    pub pixel_limit: u64,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// A class-folder tree, a CSV manifest or a folder of photos.
    pub src: PathBuf,
}

pub fn run(c: FacesCommand) -> anyhow::Result<()> {
    match c {
        FacesCommand::Detect(a) => detect(a),
        FacesCommand::Align(a) => align(a),
    }
}

/// Files named on the command line, folders searched recursively.
pub fn expand(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            out.extend(crate::data::folder::files_under(p)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// One output file name per input photo, unique within a folder: the file stem, prefixed by
/// its parent folder's name where two photos share a stem, numbered where that is not enough.
pub fn output_stems(paths: &[PathBuf]) -> Vec<String> {
    let stem = |p: &Path| {
        p.file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
    };
    let mut counts = std::collections::HashMap::new();
    for p in paths {
        *counts.entry(stem(p)).or_insert(0usize) += 1;
    }
    let mut taken = std::collections::HashSet::new();
    paths
        .iter()
        .map(|p| {
            let s = stem(p);
            let base = if counts[&s] > 1 {
                let parent = p
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|d| d.to_string_lossy().into_owned());
                parent.map_or(s.clone(), |d| format!("{d}_{s}"))
            } else {
                s
            };
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            name
        })
        .collect()
}

/// Saves an annotated copy as `<dir>/<stem>.jpg` (JPEG keeps a 4000-pixel photo small).
pub fn save_annotated(dir: &Path, stem: &str, img: &image::RgbImage) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{stem}.jpg"));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
        .encode_image(img)
        .with_context(|| format!("encoding {}", path.display()))?;
    crate::atomic_file::write(&path, &bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn detect(a: DetectArgs) -> anyhow::Result<()> {
    let detector = a.detector.detector()?;
    let paths = expand(&a.inputs)?;
    if let Some(dir) = &a.annotate {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let stems = output_stems(&paths);
    let bar = crate::progress::items_bar(paths.len() as u64, "detect");
    let mut failed = 0;
    let mut warned = false;
    // Photos decoded a few at a time (bounded memory), detected in parallel, printed in order.
    for (chunk, names) in paths.chunks(8).zip(stems.chunks(8)) {
        use rayon::prelude::*;
        let results: Vec<_> = chunk
            .par_iter()
            .map(|p| -> anyhow::Result<_> {
                let img = decode_rgb(p, DEFAULT_PIXEL_LIMIT)?;
                let faces = detector
                    .detect(&img)
                    .with_context(|| format!("{}", p.display()))?;
                Ok((img, faces))
            })
            .collect();
        for ((path, name), r) in chunk.iter().zip(names).zip(results) {
            bar.inc(1);
            let (img, faces) = match r {
                Ok(v) => v,
                Err(e) => {
                    failed += 1;
                    bar.suspend(|| eprintln!("error: {e:#}"));
                    continue;
                }
            };
            bar.suspend(|| {
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({"path": path, "width": img.width(), "height": img.height(), "faces": faces})
                    );
                } else {
                    print_faces(path, &img, &faces);
                }
            });
            if let Some(dir) = &a.annotate {
                let marks: Vec<Mark> = faces
                    .iter()
                    .map(|f| Mark {
                        face: *f,
                        label: Some(format!("{:.2}", f.score)),
                        class: None,
                        landmarks: true,
                    })
                    .collect();
                let (drawn, warning) = annotate(&img, &marks);
                if let (Some(w), false) = (warning, warned) {
                    warned = true;
                    bar.suspend(|| eprintln!("warning: {w}"));
                }
                save_annotated(dir, name, &drawn)?;
            }
        }
    }
    bar.finish_and_clear();
    if let Some(dir) = &a.annotate {
        eprintln!("annotated copies written to {}", dir.display());
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} photos could not be read", paths.len());
    }
    Ok(())
}

fn print_faces(path: &Path, img: &image::RgbImage, faces: &[crate::faces::Face]) {
    let n = faces.len();
    println!(
        "{}  {}x{}  {}",
        path.display(),
        img.width(),
        img.height(),
        match n {
            0 => "no face found".to_string(),
            1 => "1 face".to_string(),
            _ => format!("{n} faces"),
        }
    );
    for (i, f) in faces.iter().enumerate() {
        let [x, y, w, h] = f.bbox;
        let eyes = format!(
            "eyes ({:.0}, {:.0}) ({:.0}, {:.0})",
            f.landmarks[0][0], f.landmarks[0][1], f.landmarks[1][0], f.landmarks[1][1]
        );
        println!(
            "  face {i}  box {x:.0},{y:.0} {w:.0}x{h:.0}  score {:.3}  {eyes}",
            f.score
        );
    }
}

fn align(a: AlignArgs) -> anyhow::Result<()> {
    let cropper = a.detector.cropper(a.size)?;
    let opts = AlignSetOptions {
        multiple: a.multiple,
        format: a.format,
        on_bad_image: a.on_bad_image,
        pixel_limit: a.pixel_limit,
    };
    let bar = crate::progress::items_bar(0, "align");
    let started = std::time::Instant::now();
    let report = align_set(
        &a.src,
        &a.out,
        &cropper,
        &opts,
        |n| bar.set_length(n as u64),
        |n| bar.inc(n as u64),
    )
    .with_context(|| format!("aligning {}", a.src.display()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let with_crops: std::collections::HashSet<&PathBuf> =
        report.crops.iter().map(|r| &r.source).collect();
    println!(
        "{} photos: {} aligned crops from {} photos, {} skipped  ({:.1} photos/s)",
        report.photos,
        report.crops.len(),
        with_crops.len(),
        report.skipped.len(),
        report.photos as f64 / secs.max(1e-9)
    );
    for b in report.skipped.iter().take(10) {
        println!("  skipped {}: {}", b.path.display(), b.reason);
    }
    if report.skipped.len() > 10 {
        println!("  ... {} more in skipped.csv", report.skipped.len() - 10);
    }
    println!(
        "wrote {} (faces.csv, skipped.csv, faceattr-dataset.json)",
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_stems_are_unique_and_readable() {
        let paths: Vec<PathBuf> = ["a/x.jpg", "b/x.png", "b/y.jpg", "c/x.jpg", "b/x.jpg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            output_stems(&paths),
            ["a_x", "b_x", "y", "c_x", "b_x-2"].map(String::from)
        );
    }
}
