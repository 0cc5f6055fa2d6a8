//! `faceattr data inspect|celeba`: look inside a dataset; build CelebA splits.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::data::LabeledSet;
use crate::data::celeba::{Layout, PerClass, REFERENCE_PER_CLASS, build};
use crate::data::decode::DEFAULT_PIXEL_LIMIT;
use crate::data::inspect::inspect;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Classes with counts, image sizes and formats, and every bad file with its reason.
    #[command(
        after_help = "Examples:\n  faceattr data inspect photos/train\n  faceattr data inspect split/train.csv --json"
    )]
    Inspect(InspectArgs),
    /// Balanced train/valid/test sets for one CelebA attribute from the official partitions.
    #[command(
        after_help = "Examples:\n  faceattr data celeba --root ~/celeba --attr Male --out celeba-gender\n  faceattr data celeba --root ~/celeba --attr Eyeglasses --per-class-test all --layout symlinks --out eyeglasses"
    )]
    Celeba(CelebaArgs),
    /// Generated two-class images (cool/warm ellipses on grey) as train/valid/test JPEG
    /// folders: data to try faceattr on, and what `bench` and `scripts/bench-finetune.sh` use.
    #[command(
        after_help = "Examples:\n  faceattr data synth --out synth --per-class 1000,100,0\n  faceattr data synth --out small --per-class 20,5,5 --size 109x89"
    )]
    Synth(SynthArgs),
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// Images per class in train, valid and test.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 20, 20])]
    pub per_class: Vec<usize>,
    /// Image size HEIGHTxWIDTH, as everywhere in faceattr (CelebA's aligned crops: 218x178).
    #[arg(long, default_value = "218x178", value_parser = crate::preprocess::parse_input_size)]
    pub size: (usize, usize),
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A class-folder tree or a CSV manifest.
    pub data: PathBuf,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = DEFAULT_PIXEL_LIMIT)]
    pub pixel_limit: u64,
}

#[derive(Args, Debug)]
pub struct CelebaArgs {
    /// Folder with list_attr_celeba.txt, list_eval_partition.txt and img_align_celeba/.
    #[arg(long)]
    pub root: PathBuf,
    /// Attribute (one of the 40, e.g. Male, Eyeglasses, Smiling).
    #[arg(long, default_value = "Male")]
    pub attr: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Images per class in train (a number or `all`).
    #[arg(long, default_value_t = PerClass::Count(REFERENCE_PER_CLASS[0]).to_string_lossy())]
    pub per_class_train: String,
    #[arg(long, default_value_t = PerClass::Count(REFERENCE_PER_CLASS[1]).to_string_lossy())]
    pub per_class_valid: String,
    #[arg(long, default_value_t = PerClass::Count(REFERENCE_PER_CLASS[2]).to_string_lossy())]
    pub per_class_test: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Layout::Manifest)]
    pub layout: Layout,
    #[arg(long)]
    pub json: bool,
}

impl PerClass {
    fn to_string_lossy(self) -> String {
        match self {
            PerClass::Count(n) => n.to_string(),
            PerClass::All => "all".into(),
        }
    }
}

pub fn run(c: DataCommand) -> anyhow::Result<()> {
    match c {
        DataCommand::Synth(a) => {
            let &[train, valid, test] = a.per_class.as_slice() else {
                anyhow::bail!("--per-class takes three counts, train,valid,test (e.g. 1000,100,0)");
            };
            let counts = [train, valid, test];
            let (h, w) = a.size;
            let (w, h) = (u32::try_from(w)?, u32::try_from(h)?);
            crate::data::synthetic::write_dataset(&a.out, counts, w, h, a.seed)
                .with_context(|| format!("writing generated images under {}", a.out.display()))?;
            println!(
                "wrote {} images under {} (train/valid/test x cool/warm)",
                2 * counts.iter().sum::<usize>(),
                a.out.display()
            );
            Ok(())
        }
        DataCommand::Inspect(a) => {
            let set = LabeledSet::open(&a.data)?;
            let bar = crate::progress::items_bar(set.samples.len() as u64, "inspect");
            let r = inspect(&set, a.pixel_limit, || bar.inc(1));
            bar.finish_and_clear();
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            println!("{}", set.source.display());
            println!("{:<24} {:>8}", "class", "images");
            for c in &r.classes {
                println!("{:<24} {:>8}", c.name, c.count);
            }
            let fmts: Vec<String> = r.formats.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!("formats: {}", fmts.join(", "));
            if let (Some(w), Some(h)) = (&r.sizes.width, &r.sizes.height) {
                println!("width  min {} median {} max {}", w.min, w.median, w.max);
                println!("height min {} median {} max {}", h.min, h.median, h.max);
            }
            if r.bad.is_empty() {
                println!("bad files: none");
            } else {
                println!("bad files: {}", r.bad.len());
                for b in &r.bad {
                    println!("  {}: {}", b.path.display(), b.reason);
                }
            }
            Ok(())
        }
        DataCommand::Celeba(a) => {
            let parse = |s: &str| {
                s.parse::<PerClass>()
                    .map_err(|e| anyhow::anyhow!("--per-class-*: {e}"))
            };
            let per = [
                parse(&a.per_class_train)?,
                parse(&a.per_class_valid)?,
                parse(&a.per_class_test)?,
            ];
            let r = build(&a.root, &a.attr, &a.out, per, a.seed, a.layout)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            for p in &r.problems {
                eprintln!(
                    "warning: {}{}: {}",
                    p.file.display(),
                    if p.line > 0 {
                        format!(" line {}", p.line)
                    } else {
                        String::new()
                    },
                    p.reason
                );
            }
            println!(
                "{:<8} {}",
                "split",
                r.classes
                    .iter()
                    .map(|c| format!("{c:>10}"))
                    .collect::<String>()
            );
            for (i, name) in crate::data::celeba::PARTITIONS.iter().enumerate() {
                println!(
                    "{:<8} {}",
                    name,
                    r.counts[i]
                        .iter()
                        .map(|n| format!("{n:>10}"))
                        .collect::<String>()
                );
            }
            for o in &r.outputs {
                println!("wrote {}", o.display());
            }
            Ok(())
        }
    }
}
