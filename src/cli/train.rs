//! `faceattr train`: the reference fine-tuning recipe, or `--resume` of a run.

use std::path::PathBuf;

use clap::Args;

use crate::train::config::TrainArgs;
use crate::train::trainer::{read_args, train};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  faceattr train --data celeba/train --valid celeba/valid \\
      --weights vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 --out runs/gender
  faceattr train --data split/train.csv --weights vgg16-397923af.pth --conventions torch --out runs/t
  faceattr train --resume runs/gender

The run folder gets args.json, history.csv, curves.png, summary.txt, skipped.csv, train.log,
weights/best.safetensors and weights/last.safetensors.")]
pub struct TrainCommand {
    /// Continue the run in this folder after its last completed epoch.
    #[arg(long, conflicts_with_all = ["data", "weights", "out"])]
    pub resume: Option<PathBuf>,
    /// Raise the epoch limit of a resumed run.
    #[arg(long, requires = "resume")]
    pub epochs_total: Option<usize>,
    #[command(flatten)]
    pub args: Option<TrainArgs>,
}

pub fn run(c: TrainCommand) -> anyhow::Result<()> {
    let outcome = match (c.resume, c.args) {
        (Some(run), _) => {
            let mut args = read_args(&run)?;
            args.out = run;
            if let Some(e) = c.epochs_total {
                args.epochs = e;
            }
            train(args, true, false)?
        }
        (None, Some(args)) => train(args, false, false)?,
        (None, None) => {
            anyhow::bail!("give --data, --weights and --out for a new run, or --resume RUN")
        }
    };
    let best = &outcome
        .history
        .iter()
        .find(|r| r.epoch == outcome.best_epoch);
    if let Some(b) = best {
        println!(
            "done: best epoch {} with validation accuracy {:.2} % — {}",
            b.epoch,
            100.0 * b.val_acc,
            outcome.run.join("weights/best.safetensors").display()
        );
    }
    Ok(())
}
