//! `faceattr bench data`: decoded, resized and preprocessed images per second of the input
//! pipeline, per worker count.

use std::time::Instant;

use clap::Args;

use crate::preprocess::{Interpolation, Preprocessing};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faceattr bench data\n  faceattr bench data celeba/train --workers 1,2,4"
)]
pub struct DataBenchArgs {
    /// A class-folder tree or manifest; default: 600 generated 178x218 JPEGs in a temporary folder.
    pub data: Option<std::path::PathBuf>,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    #[arg(long, default_value_t = 12)]
    pub batch: usize,
    /// Passes over the data per worker count; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: DataBenchArgs) -> anyhow::Result<()> {
    use crate::data::bad::{BadImageLog, BadImagePolicy};
    use crate::data::pipeline::{Pipeline, epoch_order};
    use crate::data::{DataError, LabeledSet};
    let tmp;
    let root = match a.data {
        Some(p) => p,
        None => {
            tmp = tempfile::tempdir()?;
            crate::data::synthetic::write_dataset(tmp.path(), [300, 0, 0], 178, 218, 0)?;
            tmp.path().join("train")
        }
    };
    let set = LabeledSet::open(&root)?;
    let spec = crate::preprocess::InputSpec {
        height: 218,
        width: 178,
        preprocessing: Preprocessing::Caffe,
        interpolation: Interpolation::Nearest,
        pixel_limit: crate::data::decode::DEFAULT_PIXEL_LIMIT,
        decoding: Default::default(),
    };
    let order = epoch_order(set.samples.len(), 0, 1, true);
    let mut rows = Vec::new();
    for &workers in &a.workers {
        let p = Pipeline {
            spec,
            batch: a.batch,
            workers,
            prefetch: 2,
            policy: BadImagePolicy::Skip,
        };
        let mut rates: Vec<f64> = (0..a.repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                let stats = p.for_each_batch(
                    &set.samples,
                    &order,
                    &BadImageLog::default(),
                    |_| -> Result<(), DataError> { Ok(()) },
                );
                stats.map(|s| s.images as f64 / t.elapsed().as_secs_f64())
            })
            .collect::<Result<_, _>>()?;
        rates.sort_by(f64::total_cmp);
        rows.push(serde_json::json!({"workers": workers, "images_per_s": rates[rates.len() / 2]}));
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"images": set.samples.len(), "results": rows})
        );
    } else {
        println!(
            "{} images from {}, decoded + resized + preprocessed to 218x178 caffe, median of {}",
            set.samples.len(),
            root.display(),
            a.repeats
        );
        for r in rows {
            println!(
                "{:>2} workers {:>9.1} img/s",
                r["workers"],
                r["images_per_s"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
