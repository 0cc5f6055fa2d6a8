//! Every option of a training run, with defaults resolved; saved as `args.json` in the run
//! folder and read back by `--resume`.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::cache::CacheDtype;
use crate::data::bad::BadImagePolicy;
use crate::data::decode::{DEFAULT_PIXEL_LIMIT, Decoding};
use crate::device::Backend;
use crate::gpu::Precision;
use crate::model::{Conventions, TrainableFrom};
use crate::preprocess::{Framing, Interpolation, Preprocessing};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Use the frozen-feature cache whenever it is exact (frozen prefix, no augmentation).
    #[default]
    Auto,
    Off,
}

#[derive(Args, Debug, Clone, Serialize, Deserialize)]
pub struct TrainArgs {
    /// Training images: a folder of class sub-folders or a CSV manifest (path,label).
    #[arg(long)]
    pub data: PathBuf,
    /// Validation images (same classes). Without it, --valid-fraction of --data is held out.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Fraction of --data held out for validation when --valid is not given (stratified, seeded).
    #[arg(long, default_value_t = 0.2)]
    pub valid_fraction: f64,
    /// Base weights: a Keras .h5, PyTorch .pth or safetensors file, or `random` (seeded
    /// Glorot initialisation, for experiments and the demo).
    #[arg(long)]
    pub weights: String,
    /// Channel widths of the 13 convolutions for `--weights random` (default: VGG16's 64..512).
    #[arg(long, value_delimiter = ',')]
    pub widths: Option<Vec<usize>>,
    /// The run folder (created; must not hold a finished or running run unless --resume).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    #[arg(long, default_value_t = 12)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// First trainable layer: all, head, block1..block5, or e.g. block5_conv2.
    #[arg(long, default_value = "block5")]
    pub trainable: TrainableFrom,
    /// Units of the head's hidden Dense layer.
    #[arg(long, default_value_t = 128)]
    pub head: usize,
    /// Stop after this many epochs without a better validation accuracy (0: never).
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Conventions::Keras)]
    pub conventions: Conventions,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// With `--backend cuda`: the math the GPU's convolutions may use (fp32: float32 products,
    /// the CPU's numbers; tf32: tensor cores, products rounded to TF32).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    #[serde(default)]
    pub precision: Precision,
    /// Input size HEIGHTxWIDTH.
    #[arg(long, default_value = "218x178", value_parser = crate::preprocess::parse_input_size)]
    pub input: (usize, usize),
    /// Preprocessing; defaults to the one the weights were trained with.
    #[arg(long, value_enum)]
    pub preprocess: Option<Preprocessing>,
    #[arg(long, value_enum, default_value_t = Interpolation::Nearest)]
    pub interpolation: Interpolation,
    /// How the training images are framed; by default what the data's faceattr-dataset.json
    /// says (written by `data celeba` and `faces align`), else whole images. Recorded in the
    /// model: `predict --faces auto` detects and aligns faces for aligned models.
    #[arg(long, value_enum)]
    pub framing: Option<Framing>,
    #[arg(long, value_enum, default_value_t = CacheMode::Auto)]
    pub cache: CacheMode,
    /// Largest frozen-feature cache kept in memory (MiB); a larger one is memory-mapped from a
    /// file in the run folder.
    #[arg(long, default_value_t = 4096)]
    pub cache_memory: u64,
    #[arg(long, value_enum, default_value_t = CacheDtype::F32)]
    pub cache_dtype: CacheDtype,
    /// Decoding threads of the input pipeline.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, value_enum, default_value_t = BadImagePolicy::Skip)]
    pub on_bad_image: BadImagePolicy,
    /// Images with more pixels than this are rejected before decoding.
    #[arg(long, default_value_t = DEFAULT_PIXEL_LIMIT)]
    pub pixel_limit: u64,
    /// `faceattr`: apply EXIF orientation, composite alpha over white. `keras`: as Keras'
    /// `load_img`, neither. Recorded in the model; `eval`, `predict` and `serve` follow it.
    #[arg(long, value_enum, default_value_t = Decoding::Faceattr)]
    #[serde(default)]
    pub decoding: Decoding,
    /// After each epoch, set the head's BatchNorm moving statistics to the exact statistics of
    /// the training set under the epoch's final weights (from the feature cache). Off by
    /// default, as in Keras, where they follow the batches with momentum 0.99: that needs a
    /// few hundred steps to settle, so short runs (the demo's 27 steps an epoch) validate with
    /// statistics far from the network's and their validation accuracy jumps.
    #[arg(long)]
    #[serde(default)]
    pub bn_recalibrate: bool,
}

impl TrainArgs {
    /// A run with every option at its command-line default, so the library, the demo and the
    /// tests share one set of defaults with `faceattr train --help`.
    pub fn new(
        data: &std::path::Path,
        weights: &str,
        out: &std::path::Path,
    ) -> Result<Self, clap::Error> {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: TrainArgs,
        }
        use clap::Parser;
        let data = data.display().to_string();
        let out = out.display().to_string();
        Wrapper::try_parse_from([
            "faceattr-train",
            "--data",
            &data,
            "--weights",
            weights,
            "--out",
            &out,
        ])
        .map(|w| w.args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_recipe() {
        let a =
            TrainArgs::new(std::path::Path::new("d"), "w.h5", std::path::Path::new("o")).unwrap();
        assert_eq!(
            (a.epochs, a.batch, a.lr, a.patience, a.head),
            (20, 12, 1e-3, 3, 128)
        );
        assert_eq!(a.trainable, TrainableFrom::REFERENCE);
        assert_eq!(a.conventions, Conventions::Keras);
        assert_eq!(a.input, (218, 178));
    }
}
