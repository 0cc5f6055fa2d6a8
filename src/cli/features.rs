//! `faceattr features`: pooled base features of images, as text or JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::data::decode::DEFAULT_PIXEL_LIMIT;
use crate::device::Backend;
use crate::features::extract;
use crate::model::vgg16::Vgg16;
use crate::preprocess::InputSpec;
use crate::preprocess::{Interpolation, Preprocessing};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faceattr features --weights vgg16_notop.h5 face.jpg\n  faceattr features --weights vgg16-397923af.pth --json a.png b.jpg"
)]
pub struct FeaturesArgs {
    /// Weights file (Keras .h5, PyTorch .pth, safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// Preprocessing; defaults to the one the weights were trained with.
    #[arg(long)]
    pub preprocess: Option<Preprocessing>,
    /// Input size HEIGHTxWIDTH; other images are resized.
    #[arg(long, default_value = "218x178", value_parser = crate::preprocess::parse_input_size)]
    pub input: (usize, usize),
    #[arg(long, value_enum, default_value_t = Interpolation::Nearest)]
    pub interpolation: Interpolation,
    /// `faceattr`: apply EXIF orientation, composite alpha over white; `keras`: neither, as
    /// Keras' `load_img` (to compare with features computed in Keras).
    #[arg(long, value_enum, default_value_t = crate::data::decode::Decoding::Faceattr)]
    pub decoding: crate::data::decode::Decoding,
    #[arg(long, default_value_t = 12)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Print JSON: {"images":[{"path","features":[...]}]}.
    #[arg(long)]
    pub json: bool,
    /// Image files.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn run(a: FeaturesArgs) -> anyhow::Result<()> {
    let device = a.backend.device()?;
    let ws = crate::weights::load(&a.weights)?;
    let base = Vgg16::from_weights(&ws, &device)
        .with_context(|| format!("loading VGG16 from {}", a.weights.display()))?;
    let spec = InputSpec {
        height: a.input.0,
        width: a.input.1,
        preprocessing: a.preprocess.unwrap_or(ws.preprocessing),
        interpolation: a.interpolation,
        pixel_limit: DEFAULT_PIXEL_LIMIT,
        decoding: a.decoding,
    };
    let bar = crate::progress::items_bar(a.images.len() as u64, "features");
    let results = extract(&base, &spec, &a.images, a.batch, &device, |n| {
        bar.inc(n as u64)
    });
    bar.finish_and_clear();
    let mut failed = 0;
    let mut json_rows = Vec::new();
    for r in &results {
        match &r.features {
            Ok(f) if a.json => json_rows.push(serde_json::json!({"path": r.path, "features": f})),
            Ok(f) => {
                let vals: Vec<String> = f.iter().map(|v| format!("{v:.6}")).collect();
                println!("{}\t{}", r.path.display(), vals.join(" "));
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({"images": json_rows}))?
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} images could not be read", results.len());
    }
    Ok(())
}
