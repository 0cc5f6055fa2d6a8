//! `faceattr demo`: the whole job in a few minutes without downloads. It generates a small
//! two-class image set, trains a small VGG16 (random frozen base, block5 + head trained) on
//! it, evaluates on held-out images, predicts one, and says where the run folder is.

use std::path::PathBuf;

use clap::Args;

use crate::data::LabeledSet;
use crate::data::synthetic::write_dataset;
use crate::device::Backend;
use crate::eval::metrics::compute;
use crate::eval::predict::predict;
use crate::model::saved;
use crate::train::config::TrainArgs;
use crate::train::trainer::train;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the generated images and the run go.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Training images per class (validation and test get a quarter each).
    #[arg(long, default_value_t = 160)]
    pub images: usize,
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
}

/// Channel widths of the demo's small VGG16 (the real one is 64..512).
pub const DEMO_WIDTHS: [usize; 13] = [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64];

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let data = a.out.join("data");
    let quarter = (a.images / 4).max(4);
    println!(
        "generating {} + {} + {} images per class in {}",
        a.images,
        quarter,
        quarter,
        data.display()
    );
    write_dataset(&data, [a.images, quarter, quarter], 178, 218, a.seed)?;
    let run = a.out.join("run");
    if run.exists() {
        std::fs::remove_dir_all(&run)?;
    }
    let mut args = TrainArgs::new(&data.join("train"), "random", &run)?;
    args.valid = Some(data.join("valid"));
    args.widths = Some(DEMO_WIDTHS.to_vec());
    args.epochs = a.epochs;
    args.head = 32;
    args.seed = a.seed;
    args.backend = a.backend;
    args.cache_memory = 1024;
    // 27 steps an epoch are too few for BatchNorm's momentum 0.99 to settle (README, Demo)
    args.bn_recalibrate = true;
    train(args, false, false)?;

    let device = a.backend.device()?;
    let best = run.join("weights/best.safetensors");
    let loaded = saved::load(&best, &device)?;
    let test = LabeledSet::open(&data.join("test"))?;
    let paths: Vec<PathBuf> = test.samples.iter().map(|s| s.path.clone()).collect();
    let preds = predict(&loaded.model, &paths, 12, &device, |_| {});
    let truth: Vec<usize> = test.samples.iter().map(|s| s.label).collect();
    let predicted: Vec<usize> = preds.iter().map(|p| p.label().unwrap_or(0)).collect();
    let m = compute(&test.classes, &truth, &predicted);
    println!(
        "test accuracy {:.1} % on {} held-out images",
        100.0 * m.accuracy,
        m.n
    );
    if let Some(p) = preds.first()
        && let (Ok(probs), Some(l)) = (&p.probs, p.label())
    {
        println!(
            "example: {}  {} {:.1} %",
            p.path.display(),
            test.classes[l],
            100.0 * probs[l]
        );
    }
    println!(
        "run folder: {} (curves.png, history.csv, weights/best.safetensors)",
        run.display()
    );
    Ok(())
}
