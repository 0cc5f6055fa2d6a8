//! `faceattr summary`: the reference article's tables for a given configuration.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model::TrainableFrom;
use crate::model::architecture::VGG16_WIDTHS;
use crate::model::summary::summarize;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faceattr summary --weights none\n  faceattr summary --weights vgg16.h5 --trainable block4 --json"
)]
pub struct SummaryArgs {
    /// Weights file whose channel widths to use, or `none` for the real VGG16 (64..512).
    #[arg(long, default_value = "none")]
    pub weights: String,
    /// Input size HEIGHTxWIDTH.
    #[arg(long, default_value = "218x178", value_parser = crate::preprocess::parse_input_size)]
    pub input: (usize, usize),
    /// First trainable layer: all, head, block1..block5 or a layer name such as block5_conv2.
    #[arg(long, default_value = "block5")]
    pub trainable: TrainableFrom,
    /// Units of the head's hidden Dense layer.
    #[arg(long, default_value_t = 128)]
    pub head: usize,
    /// Number of classes.
    #[arg(long, default_value_t = 2)]
    pub classes: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: SummaryArgs) -> anyhow::Result<()> {
    let widths = if a.weights == "none" {
        VGG16_WIDTHS
    } else {
        let path = PathBuf::from(&a.weights);
        let ws = crate::weights::load(&path)?;
        let base =
            crate::model::vgg16::Vgg16::from_weights(&ws, &crate::device::Backend::Flex.device()?)
                .with_context(|| format!("loading VGG16 from {}", path.display()))?;
        base.widths()
    };
    let s = summarize(&widths, a.input, a.head, a.classes, a.trainable);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.to_text());
    }
    Ok(())
}
