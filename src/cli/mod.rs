//! The command line: argument definitions and one function per subcommand over library calls.

pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod faces;
pub mod features;
pub mod predict;
pub mod serve;
pub mod summary;
pub mod train;
pub mod weights;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "faceattr",
    version,
    about = "Face attribute (gender) classification by fine-tuning VGG16, faithful to Keras and PyTorch",
    after_help = "Examples:\n  faceattr demo\n  faceattr train --data faces/train --valid faces/valid --weights vgg16_notop.h5 --out runs/gender\n  faceattr predict --model runs/gender/weights/best.safetensors photo.jpg\n  faceattr predict --model best.safetensors --annotate out/ group.jpg\n  faceattr faces align --out aligned photos/\n  faceattr serve --model best.safetensors\n  faceattr summary --weights none\n  faceattr weights fetch vgg16 --source keras\n  faceattr features --weights vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 face.jpg"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a small two-class image set, train, evaluate and predict: the whole job in minutes.
    Demo(demo::DemoArgs),
    /// Fine-tune VGG16 + head on labelled images (the reference recipe by default).
    Train(train::TrainCommand),
    /// Predict the class of each face in photos (or of whole images) with a trained model.
    Predict(predict::PredictArgs),
    /// Serve a model over HTTP, with a web page, dynamic batching and metrics.
    Serve(serve::ServeArgs),
    /// Find faces in photos; align them as CelebA's aligned set was made.
    #[command(subcommand)]
    Faces(faces::FacesCommand),
    /// Evaluate a trained model on a labelled test set: figures, charts, report.json, card.md.
    Eval(eval::EvalArgs),
    /// Print a trained model's card: what it is, its data, its limits.
    Card(eval::CardArgs),
    /// Inspect datasets; build CelebA splits.
    #[command(subcommand)]
    Data(data::DataCommand),
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
        Command::Demo(a) => demo::run(a),
        Command::Train(c) => train::run(c),
        Command::Predict(a) => predict::run(a),
        Command::Faces(c) => faces::run(c),
        Command::Serve(a) => serve::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Card(a) => eval::run_card(a),
        Command::Data(c) => data::run(c),
        Command::Summary(a) => summary::run(a),
        Command::Features(a) => features::run(a),
        Command::Weights(c) => weights::run(c),
        Command::Bench(c) => bench::run(c),
    }
}
