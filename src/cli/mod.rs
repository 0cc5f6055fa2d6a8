//! The command line: argument definitions and one function per subcommand over library calls.

pub mod bench;
pub mod features;
pub mod summary;
pub mod weights;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "faceattr",
    version,
    about = "Face attribute (gender) classification by fine-tuning VGG16, faithful to Keras and PyTorch",
    after_help = "Examples:\n  faceattr summary --weights none\n  faceattr weights fetch vgg16 --source keras\n  faceattr features --weights vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 face.jpg"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the layer table and parameter counts (total / trainable / non-trainable).
    Summary(summary::SummaryArgs),
    /// Print the pooled VGG16 features of images.
    Features(features::FeaturesArgs),
    /// Known pretrained weight files: list them, download and verify them.
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// Measure throughput (images/s) of the network on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Summary(a) => summary::run(a),
        Command::Features(a) => features::run(a),
        Command::Weights(c) => weights::run(c),
        Command::Bench(c) => bench::run(c),
    }
}

/// Parses `218x178` (height x width).
pub fn parse_input_size(s: &str) -> Result<(usize, usize), String> {
    let (h, w) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{s}' is not HEIGHTxWIDTH, e.g. 218x178"))?;
    let h: usize = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in '{s}'"))?;
    let w: usize = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in '{s}'"))?;
    if h < 32 || w < 32 {
        return Err(format!(
            "input {h}x{w} is too small: VGG16's five pools need at least 32x32"
        ));
    }
    Ok((h, w))
}
