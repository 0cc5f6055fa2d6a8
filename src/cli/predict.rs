//! `faceattr predict`: the class of each image with every class's probability.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::device::Backend;
use crate::eval::predict::predict;
use crate::model::saved;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faceattr predict --model runs/gender/weights/best.safetensors photo.jpg\n  faceattr predict --model best.safetensors --json photos/"
)]
pub struct PredictArgs {
    /// A model saved by `faceattr train`.
    #[arg(long)]
    pub model: PathBuf,
    /// JSON lines: {"path","label","probs":{class: p}}.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 12)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Write a Grad-CAM heat map per image into this folder (`<name>.gradcam.png`): where the
    /// last convolutional block looked for the predicted class.
    #[arg(long)]
    pub explain: Option<PathBuf>,
    /// Image files or folders (searched recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

fn expand(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
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

pub fn run(a: PredictArgs) -> anyhow::Result<()> {
    let device = a.backend.device()?;
    let loaded = saved::load(&a.model, &device)?;
    let classes = &loaded.meta.spec.class_names;
    let paths = expand(&a.inputs)?;
    let bar = crate::progress::items_bar(paths.len() as u64, "predict");
    let preds = predict(&loaded.model, &paths, a.batch, &device, |n| {
        bar.inc(n as u64)
    });
    bar.finish_and_clear();
    let mut failed = 0;
    for p in &preds {
        match (&p.probs, p.label()) {
            (Ok(probs), Some(label)) if a.json => {
                let map: serde_json::Map<String, serde_json::Value> = classes
                    .iter()
                    .zip(probs)
                    .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"path": p.path, "label": classes[label], "probs": map})
                );
            }
            (Ok(probs), Some(label)) => {
                let others: Vec<String> = classes
                    .iter()
                    .zip(probs)
                    .enumerate()
                    .filter(|(i, _)| *i != label)
                    .map(|(_, (c, v))| format!("{c} {:.1} %", 100.0 * v))
                    .collect();
                println!(
                    "{}  {} {:.1} %  ({})",
                    p.path.display(),
                    classes[label],
                    100.0 * probs[label],
                    others.join(", ")
                );
            }
            (Err(e), _) => {
                failed += 1;
                eprintln!("error: {e}");
            }
            _ => {}
        }
    }
    if let Some(dir) = &a.explain {
        explain(&loaded.model, &preds, dir, a.batch, &device)?;
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} images could not be read", preds.len());
    }
    Ok(())
}

fn explain(
    model: &crate::model::Classifier,
    preds: &[crate::eval::predict::Prediction],
    dir: &std::path::Path,
    batch: usize,
    device: &burn::tensor::Device,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec = crate::eval::predict::input_spec(model);
    let ok: Vec<_> = preds
        .iter()
        .filter_map(|p| p.label().map(|l| (p, l)))
        .collect();
    for chunk in ok.chunks(batch.max(1)) {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        let mut names = Vec::new();
        for (p, l) in chunk {
            if let Ok(img) = spec.load(&p.path) {
                images.push(img);
                labels.push(*l);
                let stem = p
                    .path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("image");
                names.push(dir.join(format!("{stem}.gradcam.png")));
            }
        }
        for (img, path) in crate::eval::gradcam::explain(model, &images, &labels, device)
            .into_iter()
            .zip(names)
        {
            img.save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    eprintln!("Grad-CAM heat maps written to {}", dir.display());
    Ok(())
}
