//! `faceattr bench model`: images per second of the real-size VGG16 on random data, for the
//! reference workloads: W1 base forward, W2 one reference training step, W3 the same step from
//! cached frozen-prefix features. Medians of several timed runs after a warm-up.

use std::time::Instant;

use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::device::Backend;
use crate::model::head::Head;
use crate::model::layers::{tensor2, tensor4, values};
use crate::model::vgg16::{VGG16_WIDTHS, Vgg16};
use crate::model::{Classifier, Conventions, ModelSpec, TrainableFrom};
use crate::preprocess::{Interpolation, Preprocessing};
use crate::train::{Adam, train_step, train_step_from_prefix};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Throughput of the network itself (random weights and inputs, real VGG16 widths).
    Model(ModelBenchArgs),
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
    /// Run only these workloads (w1, w2, w3); default all.
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
    let BenchCommand::Model(a) = c;
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
    let y: Vec<f32> = (0..12)
        .flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] })
        .collect();
    let y = tensor2(&y, [12, 2], &device);
    let want = |k: &str| a.only.is_empty() || a.only.iter().any(|o| o.eq_ignore_ascii_case(k));
    let mut r = Report {
        backend: format!("{:?}", a.backend).to_lowercase(),
        threads: rayon::current_num_threads(),
        ..Default::default()
    };

    if want("w1") {
        r.w1_b12_img_s = Some(median_img_s(12, a.repeats, || {
            let _ = values(&model.base.features(x12.clone()));
        }));
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
