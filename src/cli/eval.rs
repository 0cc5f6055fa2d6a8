//! `faceattr eval` and `faceattr card`.

use std::path::PathBuf;

use clap::Args;

use super::faces::DetectorArgs;
use crate::data::LabeledSet;
use crate::device::Backend;
use crate::eval::card;
use crate::eval::predict::FacesMode;
use crate::eval::report::{evaluate, read_attributes};
use crate::model::saved;
use crate::report::charts;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  faceattr eval --model runs/gender/weights/best.safetensors --data celeba-gender/test.csv \\
      --attributes ~/celeba/list_attr_celeba.txt --out runs/gender/eval
  faceattr eval --model best.safetensors --data photos/test --json

Writes report.json, confusion_matrix.png, roc.png, reliability.png, errors.png, card.md
(and subgroups.png with --attributes) into --out.")]
pub struct EvalArgs {
    #[arg(long)]
    pub model: PathBuf,
    /// Test images: class folders or a CSV manifest, with the model's classes.
    #[arg(long)]
    pub data: PathBuf,
    /// Output folder (default: `eval` beside the model file).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// CelebA's list_attr_celeba.txt: adds accuracy with and without each attribute.
    #[arg(long)]
    pub attributes: Option<PathBuf>,
    /// How many of the most confident mistakes to list and draw.
    #[arg(long, default_value_t = 16)]
    pub worst: usize,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Faces or whole images, as `predict --faces`; with faces each photo is scored by its
    /// largest face and a photo without one is listed as left out.
    #[arg(long, value_enum, default_value_t = FacesMode::Auto)]
    pub faces: FacesMode,
    #[command(flatten)]
    pub detector: DetectorArgs,
}

#[derive(Args, Debug)]
pub struct CardArgs {
    #[arg(long)]
    pub model: PathBuf,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let device = a.backend.device()?;
    let loaded = saved::load(&a.model, &device)?;
    let set = LabeledSet::open(&a.data)?;
    if set.classes != loaded.meta.spec.class_names {
        anyhow::bail!(
            "{} has classes {:?} but the model {} was trained on {:?}",
            a.data.display(),
            set.classes,
            a.model.display(),
            loaded.meta.spec.class_names
        );
    }
    let attrs = a.attributes.as_deref().map(read_attributes).transpose()?;
    let cropper = if a.faces.detects(loaded.meta.spec.framing) {
        Some(a.detector.cropper(loaded.meta.spec.input_hw)?)
    } else {
        None
    };
    let bar = crate::progress::items_bar(set.samples.len() as u64, "eval");
    let r = evaluate(
        &loaded.model,
        &set,
        a.worst,
        attrs.as_ref(),
        cropper.as_ref(),
        &device,
        |n| bar.inc(n as u64),
    );
    bar.finish_and_clear();
    let out = a.out.unwrap_or_else(|| {
        a.model
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("eval")
    });
    std::fs::create_dir_all(&out)?;
    let json = serde_json::to_string_pretty(&r)?;
    crate::atomic_file::write(&out.join("report.json"), json.as_bytes())?;
    let card_text = card::render(&loaded.meta, Some(&r), Some(&a.data.display().to_string()));
    crate::atomic_file::write(&out.join("card.md"), card_text.as_bytes())?;
    let mut drawn = vec![
        (
            "confusion_matrix.png",
            charts::confusion_matrix(&out.join("confusion_matrix.png"), &r),
        ),
        ("roc.png", charts::roc(&out.join("roc.png"), &r)),
        (
            "reliability.png",
            charts::reliability(&out.join("reliability.png"), &r),
        ),
        (
            "errors.png",
            charts::errors(&out.join("errors.png"), &r.worst),
        ),
    ];
    if !r.subgroups.is_empty() {
        drawn.push((
            "subgroups.png",
            charts::subgroups(&out.join("subgroups.png"), &r.subgroups),
        ));
    }
    for (name, res) in &drawn {
        if let Err(e) = res {
            eprintln!("warning: {name} not drawn: {e}");
        }
    }
    for b in &r.unreadable {
        eprintln!("warning: {}: {}", b.path.display(), b.reason);
    }
    if a.json {
        println!("{json}");
        return Ok(());
    }
    println!(
        "{} images of {}: accuracy {:.2} %{}",
        r.n,
        a.data.display(),
        100.0 * r.accuracy,
        if cropper.is_some() {
            format!(
                " (largest face of each photo; {} left out)",
                r.unreadable.len()
            )
        } else {
            String::new()
        }
    );
    println!(
        "ROC AUC {}   ECE {:.4}   loss {:.4}",
        r.roc_auc.map_or("n/a".into(), |v| format!("{v:.4}")),
        r.ece,
        r.loss
    );
    println!(
        "\n{:<16} {:>9} {:>9} {:>9} {:>8}",
        "class", "precision", "recall", "F1", "support"
    );
    for c in &r.per_class {
        println!(
            "{:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
            c.name, c.precision, c.recall, c.f1, c.support
        );
    }
    println!(
        "\nconfusion (rows true, columns predicted: {})",
        r.classes.join(", ")
    );
    for (name, row) in r.classes.iter().zip(&r.confusion) {
        println!(
            "{:<16} {}",
            name,
            row.iter().map(|n| format!("{n:>8}")).collect::<String>()
        );
    }
    if !r.subgroups.is_empty() {
        println!(
            "\n{:<22} {:>9} {:>7} {:>9} {:>7} {:>7}",
            "attribute", "with", "n", "without", "n", "gap"
        );
        for g in r.subgroups.iter().take(10) {
            println!(
                "{:<22} {:>8.2}% {:>7} {:>8.2}% {:>7} {:>7.2}",
                g.attribute,
                100.0 * g.acc_with,
                g.n_with,
                100.0 * g.acc_without,
                g.n_without,
                100.0 * g.gap
            );
        }
    }
    if !r.worst.is_empty() {
        println!("\nmost confident mistakes:");
        for m in r.worst.iter().take(5) {
            println!(
                "  {}  true {}  predicted {} {:.1} %",
                m.path.display(),
                m.truth,
                m.pred,
                100.0 * m.prob
            );
        }
    }
    println!("\nwrote {}", out.display());
    Ok(())
}

pub fn run_card(a: CardArgs) -> anyhow::Result<()> {
    let loaded = saved::load(&a.model, &crate::device::Backend::Flex.device()?)?;
    let report_path = a
        .model
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("eval/report.json");
    if report_path.exists() {
        println!("(test figures: see {})\n", report_path.display());
    }
    print!("{}", card::render(&loaded.meta, None, None));
    Ok(())
}
