//! `faceattr predict`: the class of each face in photos (detected and aligned as the model's
//! training images were), or of each whole image, with every class's probability.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::faces::{DetectorArgs, expand, output_stems, save_annotated};
use crate::device::Backend;
use crate::eval::predict::{FacesMode, PhotoView, face_json, predict_faces, whole_json};
use crate::faces::annotate::{Mark, annotate};
use crate::model::saved;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  faceattr predict --model runs/gender/weights/best.safetensors photo.jpg
  faceattr predict --model best.safetensors --annotate out/ --json photos/
  faceattr predict --model best.safetensors --faces detect --explain heat/ group.jpg

With --faces auto (the default), a model trained on aligned faces (CelebA from `data celeba`,
or a set made by `faces align`) gets each face of a photo detected and aligned exactly as its
training images were; other models get the whole image. JSON lines with faces:
{\"path\",\"width\",\"height\",\"faces\":[{\"box\":[x,y,w,h],\"score\",\"landmarks\",\"label\",\"probs\":{class: p}}]};
whole images: {\"path\",\"label\",\"probs\"}. A photo with no face has \"faces\":[].")]
pub struct PredictArgs {
    /// A model saved by `faceattr train`.
    #[arg(long)]
    pub model: PathBuf,
    /// JSON lines, one per photo.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 12)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Faces or whole images (see below).
    #[arg(long, value_enum, default_value_t = FacesMode::Auto)]
    pub faces: FacesMode,
    /// Write a copy of each photo with each face boxed and labelled (e.g. `male 97.1 %`) into
    /// this folder.
    #[arg(long)]
    pub annotate: Option<PathBuf>,
    /// Write a Grad-CAM heat map per face (or image) into this folder
    /// (`<name>[.face<i>].gradcam.png`): where the last convolutional block looked for the
    /// predicted class.
    #[arg(long)]
    pub explain: Option<PathBuf>,
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// `male 97.1 %`
fn label_text(classes: &[String], probs: &[f32]) -> (usize, String) {
    let l = crate::eval::metrics::argmax(probs);
    (l, format!("{} {:.1} %", classes[l], 100.0 * probs[l]))
}

/// `(female 2.9 %)`: the other classes.
fn others_text(classes: &[String], probs: &[f32], label: usize) -> String {
    classes
        .iter()
        .zip(probs)
        .enumerate()
        .filter(|(i, _)| *i != label)
        .map(|(_, (c, v))| format!("{c} {:.1} %", 100.0 * v))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(a: PredictArgs) -> anyhow::Result<()> {
    let device = a.backend.device()?;
    let loaded = saved::load(&a.model, &device)?;
    let paths = expand(&a.inputs)?;
    for dir in [&a.annotate, &a.explain].into_iter().flatten() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if a.faces.detects(loaded.meta.spec.framing) {
        run_faces(&a, &loaded.model, &paths, &device)
    } else {
        run_whole(&a, &loaded.model, &paths, &device)
    }
}

fn run_faces(
    a: &PredictArgs,
    model: &crate::model::Classifier,
    paths: &[PathBuf],
    device: &burn::tensor::Device,
) -> anyhow::Result<()> {
    let classes = &model.spec.class_names;
    let cropper = a.detector.cropper(model.spec.input_hw)?;
    let stems = output_stems(paths);
    let bar = crate::progress::items_bar(paths.len() as u64, "predict");
    let mut failed = 0;
    let mut index = 0;
    let mut problems: Vec<String> = Vec::new();
    predict_faces(
        model,
        &cropper,
        paths,
        a.batch,
        device,
        |view: PhotoView<'_>| {
            let stem = &stems[index];
            index += 1;
            bar.inc(1);
            let p = view.prediction;
            let r = match &p.result {
                Ok(r) => r,
                Err(bad) => {
                    failed += 1;
                    bar.suspend(|| eprintln!("error: {}: {}", bad.path.display(), bad.reason));
                    return;
                }
            };
            bar.suspend(|| {
            if a.json {
                let faces: Vec<serde_json::Value> = r
                    .faces
                    .iter()
                    .map(|f| face_json(classes, &f.face, &f.probs))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"path": p.path, "width": r.width, "height": r.height, "faces": faces})
                );
            } else if r.faces.is_empty() {
                println!("{}  no face found", p.path.display());
            } else {
                for (i, f) in r.faces.iter().enumerate() {
                    let (l, text) = label_text(classes, &f.probs);
                    let [x, y, w, h] = f.face.bbox;
                    println!(
                        "{}  face {i} at {x:.0},{y:.0} {w:.0}x{h:.0} (score {:.2})  {text}  ({})",
                        p.path.display(),
                        f.face.score,
                        others_text(classes, &f.probs, l)
                    );
                }
            }
        });
            if let (Some(dir), Some(photo)) = (&a.annotate, view.photo) {
                let marks: Vec<Mark> = r
                    .faces
                    .iter()
                    .map(|f| {
                        let (l, text) = label_text(classes, &f.probs);
                        Mark {
                            face: f.face,
                            label: Some(text),
                            class: Some(l),
                            landmarks: true,
                        }
                    })
                    .collect();
                let (drawn, warning) = annotate(photo, &marks);
                problems.extend(warning);
                if let Err(e) = save_annotated(dir, stem, &drawn) {
                    problems.push(format!("{e:#}"));
                }
            }
            if let Some(dir) = &a.explain
                && !view.crops.is_empty()
            {
                let images: Vec<_> = view.crops.iter().map(|c| c.image.clone()).collect();
                let labels: Vec<usize> = r.faces.iter().map(|f| f.label()).collect();
                let maps = crate::eval::gradcam::explain(model, &images, &labels, device);
                for (i, img) in maps.into_iter().enumerate() {
                    let path = dir.join(format!("{stem}.face{i}.gradcam.png"));
                    if let Err(e) = img.save(&path) {
                        problems.push(format!("writing {}: {e}", path.display()));
                    }
                }
            }
        },
    );
    bar.finish_and_clear();
    problems.dedup();
    for p in &problems {
        eprintln!("warning: {p}");
    }
    for (what, dir) in [
        ("annotated photos", &a.annotate),
        ("Grad-CAM heat maps", &a.explain),
    ] {
        if let Some(d) = dir {
            eprintln!("{what} written to {}", d.display());
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} images could not be read", paths.len());
    }
    Ok(())
}

fn run_whole(
    a: &PredictArgs,
    model: &crate::model::Classifier,
    paths: &[PathBuf],
    device: &burn::tensor::Device,
) -> anyhow::Result<()> {
    let classes = &model.spec.class_names;
    let stems = output_stems(paths);
    let bar = crate::progress::items_bar(paths.len() as u64, "predict");
    let (mut failed, mut done) = (0, 0);
    // each image is decoded once: its prediction, annotated copy and heat map come from it
    crate::eval::predict::predict_batches(
        model,
        paths,
        a.batch,
        a.annotate.is_some(),
        device,
        |b| -> anyhow::Result<()> {
            let stems = &stems[done..done + b.predictions.len()];
            done += b.predictions.len();
            bar.suspend(|| {
                for p in &b.predictions {
                    match (&p.probs, p.label()) {
                        (Ok(probs), Some(_)) if a.json => {
                            println!(
                                "{}",
                                whole_json(&p.path.display().to_string(), classes, probs)
                            );
                        }
                        (Ok(probs), Some(label)) => {
                            let (_, text) = label_text(classes, probs);
                            println!(
                                "{}  {text}  ({})",
                                p.path.display(),
                                others_text(classes, probs, label)
                            );
                        }
                        (Err(e), _) => {
                            failed += 1;
                            eprintln!("error: {e}");
                        }
                        _ => {}
                    }
                }
            });
            if let Some(dir) = &a.annotate {
                annotate_whole(model, &b, stems, dir)?;
            }
            if let Some(dir) = &a.explain {
                explain_whole(model, &b, stems, dir, device)?;
            }
            bar.inc(b.predictions.len() as u64);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    if let Some(dir) = &a.annotate {
        eprintln!("annotated images written to {}", dir.display());
    }
    if let Some(dir) = &a.explain {
        eprintln!("Grad-CAM heat maps written to {}", dir.display());
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} images could not be read", paths.len());
    }
    Ok(())
}

/// Whole-image mode: the label written in a box around the whole picture, for one batch.
fn annotate_whole(
    model: &crate::model::Classifier,
    b: &crate::eval::predict::PredictedBatch,
    stems: &[String],
    dir: &Path,
) -> anyhow::Result<()> {
    let classes = &model.spec.class_names;
    for ((p, img), stem) in b.predictions.iter().zip(&b.originals).zip(stems) {
        let (Ok(probs), Some(img)) = (&p.probs, img) else {
            continue;
        };
        let (l, text) = label_text(classes, probs);
        let face = crate::faces::Face {
            bbox: [0.0, 0.0, img.width() as f32, img.height() as f32],
            score: 1.0,
            landmarks: [[0.0; 2]; 5],
        };
        let (drawn, warning) = annotate(
            img,
            &[Mark {
                face,
                label: Some(text),
                class: Some(l),
                landmarks: false,
            }],
        );
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        save_annotated(dir, stem, &drawn)?;
    }
    Ok(())
}

/// Whole-image mode: a Grad-CAM heat map of each image of one batch, for its predicted class.
fn explain_whole(
    model: &crate::model::Classifier,
    b: &crate::eval::predict::PredictedBatch,
    stems: &[String],
    dir: &Path,
    device: &burn::tensor::Device,
) -> anyhow::Result<()> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut names = Vec::new();
    for ((p, img), stem) in b.predictions.iter().zip(&b.framed).zip(stems) {
        if let (Some(label), Some(img)) = (p.label(), img) {
            images.push(img.clone());
            labels.push(label);
            names.push(dir.join(format!("{stem}.gradcam.png")));
        }
    }
    if images.is_empty() {
        return Ok(());
    }
    for (img, path) in crate::eval::gradcam::explain(model, &images, &labels, device)
        .into_iter()
        .zip(names)
    {
        img.save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
