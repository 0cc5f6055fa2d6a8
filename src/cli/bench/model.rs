//! `faceattr bench model`: images per second of the real-size VGG16 on random data, for the
//! reference workloads: W1 base forward, W2 one reference training step, W3 the same step from
//! cached frozen-prefix features; and each as a share of the machine's matrix-product peak.

use clap::Args;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::median_secs;
use crate::device::Backend;
use crate::gpu::Precision;
use crate::model::architecture::{VGG16_WIDTHS, conv_shapes};
use crate::model::head::Head;
use crate::model::layers::{tensor4, values};
use crate::model::vgg16::Vgg16;
use crate::model::{Classifier, Conventions, ModelSpec, TrainableFrom};
use crate::preprocess::{Interpolation, Preprocessing};
use crate::train::{Adam, train_step, train_step_from_prefix};

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
    #[arg(long, default_value = "218x178", value_parser = crate::preprocess::parse_input_size)]
    pub input: (usize, usize),
    /// Whose convolutions run on the CPU: faceattr's kernels or burn-flex's own.
    #[arg(long, value_enum, default_value_t = Kernels::Faceattr)]
    pub kernels: Kernels,
    /// With `--backend cuda`: the math the GPU's convolutions may use.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Skip measuring the machine's matrix-product peak.
    #[arg(long)]
    pub no_peak: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    Faceattr,
    Burn,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    kernels: Kernels,
    /// The GPU's name and the math its convolutions used (`--backend cuda`).
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    precision: Option<Precision>,
    threads: usize,
    /// float32 matrix-product peak of this machine through `gemm`, all threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_gflops: Option<f64>,
    /// Work per image of each workload, in GFLOP (multiply-add = 2).
    gflop_per_image: Workloads,
    #[serde(skip_serializing_if = "Option::is_none")]
    w1_b12_img_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w1_b32_img_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w2_b12_img_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    w3_b12_img_s: Option<f64>,
}

#[derive(Serialize, Clone, Copy)]
struct Workloads {
    w1: f64,
    w2: f64,
    w3: f64,
}

/// GFLOP per image of the convolutions `range` of VGG16 at `input`, forward only.
fn conv_gflop(input: (usize, usize), range: std::ops::Range<usize>) -> f64 {
    conv_shapes(1, input, 3, 0, &VGG16_WIDTHS)[range]
        .iter()
        .map(|s| s.flops() / 1e9)
        .sum()
}

/// W1: the whole base forward. W3: block5 forward and backward (kernel gradients for all
/// three, input gradients for the last two). W2: W3 plus blocks 1-4 forward.
fn workloads(input: (usize, usize)) -> Workloads {
    let b5 = |i: usize| conv_gflop(input, i..i + 1);
    let w3 = 2.0 * b5(10) + 3.0 * b5(11) + 3.0 * b5(12);
    Workloads {
        w1: conv_gflop(input, 0..13),
        w2: conv_gflop(input, 0..10) + w3,
        w3,
    }
}

impl Report {
    fn kernels_name(&self) -> &'static str {
        match self.kernels {
            Kernels::Faceattr => "faceattr",
            Kernels::Burn => "burn",
        }
    }
}

pub fn run(a: ModelBenchArgs) -> anyhow::Result<()> {
    let device = a.backend.device()?;
    let gpu = crate::gpu::use_precision(a.precision);
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
        framing: Default::default(),
        decoding: Default::default(),
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
    let y = crate::train::epoch::one_hot(&labels, 2, &device);
    let want = |k: &str| a.only.is_empty() || a.only.iter().any(|o| o.eq_ignore_ascii_case(k));
    crate::kernels::set_enabled(a.kernels == Kernels::Faceattr);
    let mut r = Report {
        backend: format!("{:?}", a.backend).to_lowercase(),
        kernels: a.kernels,
        precision: gpu.as_ref().map(|_| a.precision),
        gpu: gpu.clone(),
        threads: rayon::current_num_threads(),
        // the CPU's peak says nothing about a GPU's run
        peak_gflops: (!a.no_peak && gpu.is_none())
            .then(|| crate::kernels::gemm::peak_gflops(1.0, a.repeats.max(3))),
        gflop_per_image: workloads(a.input),
        w1_b12_img_s: None,
        w1_b32_img_s: None,
        w2_b12_img_s: None,
        w3_b12_img_s: None,
    };

    if want("w1") || want("w1_b12") {
        r.w1_b12_img_s = Some(img_s(12, a.repeats, || {
            let _ = values(&model.base.features(x12.clone()));
        }));
    }
    if want("w1") || want("w1_b32") {
        r.w1_b32_img_s = Some(img_s(32, a.repeats, || {
            let _ = values(&model.base.features(x32.clone()));
        }));
    }
    if want("w2") {
        let mut opt = Adam::new(1e-3, Conventions::Keras);
        r.w2_b12_img_s = Some(img_s(12, a.repeats, || {
            train_step(&mut model, &mut opt, x12.clone(), y.clone());
        }));
    }
    if want("w3") {
        let prefix = model.frozen_prefix(x12.clone());
        let _ = values(&prefix);
        let mut opt = Adam::new(1e-3, Conventions::Keras);
        r.w3_b12_img_s = Some(img_s(12, a.repeats, || {
            train_step_from_prefix(&mut model, &mut opt, prefix.clone(), y.clone());
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "backend {}, {} kernels, {} threads, input {}x{}, median of {} runs",
            r.backend,
            r.kernels_name(),
            r.threads,
            h,
            w,
            a.repeats
        );
        if let Some(gpu) = &r.gpu {
            println!("GPU: {gpu}");
        }
        if let Some(p) = r.peak_gflops {
            println!(
                "matrix-product peak (gemm, {} threads): {p:.1} GFLOP/s",
                r.threads
            );
        }
        let g = r.gflop_per_image;
        let rows = [
            ("W1 base forward, batch 12", r.w1_b12_img_s, g.w1),
            ("W1 base forward, batch 32", r.w1_b32_img_s, g.w1),
            ("W2 reference training step, batch 12", r.w2_b12_img_s, g.w2),
            (
                "W3 step from cached block4 features, batch 12",
                r.w3_b12_img_s,
                g.w3,
            ),
        ];
        println!(
            "{:<48} {:>10} {:>9} {:>8}",
            "workload", "img/s", "GFLOP/s", "of peak"
        );
        for (name, v, gflop) in rows {
            if let Some(v) = v {
                let rate = v * gflop;
                let share = r
                    .peak_gflops
                    .map_or("-".to_string(), |p| format!("{:.0} %", 100.0 * rate / p));
                println!("{name:<48} {v:>10.2} {rate:>9.1} {share:>8}");
            }
        }
    }
    Ok(())
}

fn img_s(batch: usize, repeats: usize, run: impl FnMut()) -> f64 {
    batch as f64 / median_secs(repeats, run)
}
