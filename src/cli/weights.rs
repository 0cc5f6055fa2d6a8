//! `faceattr weights list|fetch`: the known pretrained files and their verified download.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::weights::fetch::{default_dir, fetch};
use crate::weights::registry::{Checksum, Source, find, known};

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// List the known weight files with their source, URL, checksum and preprocessing.
    List,
    /// Download a known weight file into the cache (verified), or report the cached copy.
    #[command(
        after_help = "Examples:\n  faceattr weights fetch vgg16 --source keras\n  faceattr weights fetch vgg16 --source torchvision --dir ./weights"
    )]
    Fetch(FetchArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Model name (only vgg16 for now).
    pub model: String,
    #[arg(long, value_enum, default_value_t = Source::Keras)]
    pub source: Source,
    /// Folder to keep the file in (default: $FACEATTR_CACHE/weights or the user cache dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Download from this mirror URL instead; the checksum is still enforced.
    #[arg(long)]
    pub url: Option<String>,
}

pub fn run(c: WeightsCommand) -> anyhow::Result<()> {
    match c {
        WeightsCommand::List => {
            println!(
                "{:<7} {:<12} {:<52} {:<10} checksum",
                "model", "source", "file", "preprocess"
            );
            for k in known() {
                let sum = match &k.checksum {
                    Checksum::Sha256(h) => format!("sha256 {h}"),
                    Checksum::Sha256Prefix(p) => format!("sha256 {p}…"),
                    Checksum::Md5(h) => format!("md5 {h}"),
                    Checksum::Unrecorded => "not recorded".into(),
                };
                println!(
                    "{:<7} {:<12} {:<52} {:<10} {sum}",
                    k.model,
                    format!("{:?}", k.source).to_lowercase(),
                    k.file_name,
                    k.preprocessing.name()
                );
            }
            Ok(())
        }
        WeightsCommand::Fetch(a) => {
            let entry = find(&a.model, a.source).ok_or_else(|| {
                anyhow::anyhow!(
                    "no known weights for model '{}' from {:?}",
                    a.model,
                    a.source
                )
            })?;
            if entry.checksum == Checksum::Unrecorded {
                eprintln!(
                    "warning: no checksum is recorded for {}; only its structure is checked when loaded",
                    entry.file_name
                );
            }
            let dir = a.dir.unwrap_or_else(default_dir);
            let path = fetch(&entry, &dir, a.url.as_deref(), true)?;
            println!("{}", path.display());
            Ok(())
        }
    }
}
