//! `faceattr bench model`: images per second of the real-size VGG16 on random data, for the
//! reference workloads: W1 base forward, W2 one reference training step, W3 the same step from
//! cached frozen-prefix features. Medians of several timed runs after a warm-up.

use std::time::Instant;

use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::device::Backend;
use crate::model::head::Head;
use crate::model::layers::{tensor4, values};
use crate::model::vgg16::{VGG16_WIDTHS, Vgg16};
use crate::model::{Classifier, Conventions, ModelSpec, TrainableFrom};
use crate::preprocess::{Interpolation, Preprocessing};
use crate::train::{Adam, train_step, train_step_from_prefix};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Throughput of the network itself (random weights and inputs, real VGG16 widths).
    Model(ModelBenchArgs),
    /// Throughput of the input pipeline: decoded, resized and preprocessed images per second.
    Data(DataBenchArgs),
}

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

fn run_data(a: DataBenchArgs) -> anyhow::Result<()> {
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
    let spec = crate::features::InputSpec {
        height: 218,
        width: 178,
        preprocessing: Preprocessing::Caffe,
        interpolation: Interpolation::Nearest,
        pixel_limit: crate::data::decode::DEFAULT_PIXEL_LIMIT,
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

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faceattr bench model\n  faceattr bench model --only w1 --repeats 5 --json"
)]
pub struct ModelBenchArgs {
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Timed runs per workload (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Run only these workloads (w1, w1_b12, w1_b32, w2, w3); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Input size HEIGHTxWIDTH.
    #[arg(long, default_value = "218x178", value_parser = super::parse_input_size)]
    pub input: (usize, usize),
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Default)]
struct Report {
    backend: String,
    threads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    w1_b12_img_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w1_b32_img_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w2_b12_img_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w3_b12_img_s: Option<f64>,
}

fn median_img_s(batch: usize, repeats: usize, mut run: impl FnMut()) -> f64 {
    run(); // warm-up: allocations, kernel selection
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    batch as f64 / times[times.len() / 2]
}

pub fn run(c: BenchCommand) -> anyhow::Result<()> {
    match c {
        BenchCommand::Model(a) => run_model(a),
        BenchCommand::Data(a) => run_data(a),
    }
}

fn run_model(a: ModelBenchArgs) -> anyhow::Result<()> {
    let device = a.backend.device()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let base = Vgg16::random(&VGG16_WIDTHS, &mut rng, &device);
    let head = Head::random(512, 128, 2, &mut rng, &device);
    let spec = ModelSpec {
        input_hw: a.input,
        preprocessing: Preprocessing::Caffe,
        interpolation: Interpolation::Nearest,
        conventions: Conventions::Keras,
        trainable: TrainableFrom::REFERENCE,
        class_names: vec!["female".into(), "male".into()],
    };
    let mut model = Classifier { base, head, spec };
    let (h, w) = a.input;
    let mut input = |n: usize| {
        let v: Vec<f32> = (0..n * 3 * h * w)
            .map(|_| rng.random_range(-120.0..130.0))
            .collect();
        tensor4(&v, [n, 3, h, w], &device)
    };
    let x12 = input(12);
    let x32 = input(32);
    let labels: Vec<usize> = (0..12).map(|i| i % 2).collect();
    let y = crate::train::trainer::one_hot(&labels, 2, &device);
    let want = |k: &str| a.only.is_empty() || a.only.iter().any(|o| o.eq_ignore_ascii_case(k));
    let mut r = Report {
        backend: format!("{:?}", a.backend).to_lowercase(),
        threads: rayon::current_num_threads(),
        ..Default::default()
    };

    if want("w1") || want("w1_b12") {
        r.w1_b12_img_s = Some(median_img_s(12, a.repeats, || {
            let _ = values(&model.base.features(x12.clone()));
        }));
    }
    if want("w1") || want("w1_b32") {
        r.w1_b32_img_s = Some(median_img_s(32, a.repeats, || {
            let _ = values(&model.base.features(x32.clone()));
        }));
    }
    if want("w2") {
        let mut opt = Adam::new(1e-3, Conventions::Keras);
        r.w2_b12_img_s = Some(median_img_s(12, a.repeats, || {
            train_step(&mut model, &mut opt, x12.clone(), y.clone());
        }));
    }
    if want("w3") {
        let prefix = model.frozen_prefix(x12.clone());
        let _ = values(&prefix);
        let mut opt = Adam::new(1e-3, Conventions::Keras);
        r.w3_b12_img_s = Some(median_img_s(12, a.repeats, || {
            train_step_from_prefix(&mut model, &mut opt, prefix.clone(), y.clone());
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "backend {}, {} threads, input {}x{}, median of {} runs",
            r.backend, r.threads, h, w, a.repeats
        );
        let rows = [
            ("W1 base forward, batch 12", r.w1_b12_img_s),
            ("W1 base forward, batch 32", r.w1_b32_img_s),
            ("W2 reference training step, batch 12", r.w2_b12_img_s),
            (
                "W3 step from cached block4 features, batch 12",
                r.w3_b12_img_s,
            ),
        ];
        for (name, v) in rows {
            if let Some(v) = v {
                println!("{name:<48} {v:>8.2} img/s");
            }
        }
    }
    Ok(())
}
