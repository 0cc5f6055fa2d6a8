//! `faceattr bench`: measured throughput of the network (`model`), of each convolution on
//! faceattr's kernels (`layers`) and of the input pipeline (`data`), of face detection and alignment (`faces`), and of the service under load (`serve`). Every figure is the
//! median of several timed runs after a warm-up.

mod data;
mod faces;
mod layers;
mod model;
mod serve;

use std::time::Instant;

use clap::Subcommand;

pub use data::DataBenchArgs;
pub use faces::FacesBenchArgs;
pub use layers::LayersBenchArgs;
pub use model::{Kernels, ModelBenchArgs};
pub use serve::ServeBenchArgs;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Throughput of the network itself (random weights and inputs, real VGG16 widths).
    Model(ModelBenchArgs),
    /// Time and GFLOP/s of each VGG16 convolution on faceattr's kernels: where the time goes.
    Layers(LayersBenchArgs),
    /// Throughput of the input pipeline: decoded, resized and preprocessed images per second.
    Data(DataBenchArgs),
    /// Face detection ms per photo (beside onnxruntime's) and `faces align` photos per second.
    Faces(FacesBenchArgs),
    /// `faceattr serve` under concurrent clients: requests/s, latency percentiles, errors.
    Serve(ServeBenchArgs),
}

pub fn run(c: BenchCommand) -> anyhow::Result<()> {
    match c {
        BenchCommand::Model(a) => model::run(a),
        BenchCommand::Layers(a) => layers::run(a),
        BenchCommand::Data(a) => data::run(a),
        BenchCommand::Faces(a) => faces::run(a),
        BenchCommand::Serve(a) => serve::run(a),
    }
}

/// Median wall time in seconds of `repeats` runs of `run`, after one warm-up run.
fn median_secs(repeats: usize, mut run: impl FnMut()) -> f64 {
    run(); // warm-up: allocations, kernel selection
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            run();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
