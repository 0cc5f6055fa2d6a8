//! `faceattr bench layers`: each of VGG16's 13 convolutions on faceattr's kernels at the real
//! widths, forward (all) and backward (block5, as in the reference training step): time per
//! batch, GFLOP/s and share of the machine's matrix-product peak. This is the profile that
//! says where a forward pass or a training step spends its time. Each pass runs on the
//! algorithm the model uses (`conv3x3::Inference` forward, `conv3x3::Prepared` for a training
//! step's backward); where that is Winograd, the same pass on
//! im2col is shown beside it as a reference, left out of the shares.

use clap::Args;
use serde::Serialize;

use super::median_secs;
use crate::kernels::conv3x3;
use crate::kernels::{gemm, layout, pool};
use crate::model::architecture::{CONV_LAYER_NAMES, VGG16_WIDTHS, conv_shapes, pool_after};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faceattr bench layers\n  faceattr bench layers --batch 32 --json"
)]
pub struct LayersBenchArgs {
    #[arg(long, default_value_t = 12)]
    pub batch: usize,
    /// Input size HEIGHTxWIDTH.
    #[arg(long, default_value = "218x178", value_parser = crate::preprocess::parse_input_size)]
    pub input: (usize, usize),
    /// Timed runs per layer (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    layer: &'static str,
    pass: &'static str,
    algorithm: &'static str,
    /// A reference row (the same pass on im2col), not part of what the model runs.
    reference: bool,
    ms: f64,
    gflops: f64,
    percent_of_peak: f64,
}

fn pseudo_random(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            let v = i
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            (v >> 8) as f32 / (1u32 << 24) as f32 - 0.45
        })
        .collect()
}

pub fn run(a: LayersBenchArgs) -> anyhow::Result<()> {
    let peak = gemm::peak_gflops(1.0, a.repeats.max(3));
    let mut rows = Vec::new();
    let mut push = |layer, pass, algorithm, secs: f64, flop: f64| {
        rows.push(Row {
            layer,
            pass,
            algorithm,
            reference: algorithm == "im2col (ref)",
            ms: secs * 1e3,
            gflops: flop / secs / 1e9,
            percent_of_peak: 100.0 * flop / secs / 1e9 / peak,
        })
    };
    let mut pool_secs = 0.0;
    let shapes = conv_shapes(a.batch, a.input, 3, 0, &VGG16_WIDTHS);
    for (i, (name, &s)) in CONV_LAYER_NAMES.iter().zip(&shapes).enumerate() {
        let (h, w, cin) = (s.h, s.w, s.cin);
        let x = pseudo_random(s.pixels() * cin, i as u32);
        let weight = pseudo_random(s.cout * cin * 9, 100 + i as u32);
        let bias = vec![0.01f32; s.cout];
        // the inference forward's kernel (F(4x4, 3x3) where it suits), as the model runs it
        let forward_algorithm = conv3x3::inference_algorithm(s);
        let inference = conv3x3::Inference::new(&weight, s);
        let fwd = median_secs(a.repeats, || {
            let _ = inference.forward(&x, s, Some(&bias), true);
        });
        push(name, "forward", forward_algorithm, fwd, s.flops());
        let kernel = layout::pack_kernel(&weight, s.cout, cin);
        if forward_algorithm != "im2col" {
            let reference = median_secs(a.repeats, || {
                let _ = conv3x3::forward(&x, s, &kernel, Some(&bias), true);
            });
            push(name, "forward", "im2col (ref)", reference, s.flops());
        }
        let y = inference.forward(&x, s, Some(&bias), true);
        if pool_after(i) {
            pool_secs += median_secs(a.repeats, || {
                let _ = pool::max_pool2(&y, [s.n, h, w, s.cout]);
            });
        }
        if i >= 10 {
            // the trainable layers' kernel, as a training step prepares it
            let algorithm = conv3x3::algorithm(s);
            let prepared = conv3x3::Prepared::new(&weight, s);
            let dy = pseudo_random(y.len(), 200 + i as u32);
            // the first trainable layer needs no input gradient
            let input_grad = i > 10;
            let passes = if input_grad { 2.0 } else { 1.0 };
            let bwd = median_secs(a.repeats, || {
                let _ = conv3x3::backward(&x, &y, &dy, s, input_grad.then_some(&prepared));
            });
            push(name, "backward", algorithm, bwd, passes * s.flops());
            let flipped = input_grad.then(|| {
                layout::pack_kernel(&layout::flip_kernel(&weight, s.cout, cin), cin, s.cout)
            });
            let reference = median_secs(a.repeats, || {
                let _ = conv3x3::backward_im2col(&x, &y, &dy, s, flipped.as_deref());
            });
            push(
                name,
                "backward",
                "im2col (ref)",
                reference,
                passes * s.flops(),
            );
        }
    }
    let total: f64 = rows
        .iter()
        .filter(|r| !r.reference)
        .map(|r| r.ms)
        .sum::<f64>()
        + pool_secs * 1e3;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"batch": a.batch, "peak_gflops": peak, "pool_ms": pool_secs * 1e3, "layers": rows})
        );
        return Ok(());
    }
    println!(
        "batch {}, input {}x{}, {} threads, peak {peak:.1} GFLOP/s (gemm), median of {}",
        a.batch,
        a.input.0,
        a.input.1,
        rayon::current_num_threads(),
        a.repeats
    );
    println!(
        "{:<14} {:<9} {:<15} {:>9} {:>7} {:>9} {:>8}",
        "layer", "pass", "algorithm", "ms", "share", "GFLOP/s", "of peak"
    );
    for r in &rows {
        let share = if r.reference {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * r.ms / total)
        };
        println!(
            "{:<14} {:<9} {:<15} {:>9.1} {:>7} {:>9.1} {:>7.0}%",
            r.layer, r.pass, r.algorithm, r.ms, share, r.gflops, r.percent_of_peak
        );
    }
    println!(
        "{:<14} {:<25} {:>9.1} {:>6.1}%",
        "5 max-pools",
        "forward",
        pool_secs * 1e3,
        100.0 * pool_secs * 1e3 / total
    );
    println!("GFLOP/s count a direct convolution's multiply-adds, so Winograd can pass the peak");
    Ok(())
}
