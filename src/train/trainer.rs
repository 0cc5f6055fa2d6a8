//! The training run, as a few named steps: open the run folder and the data, start fresh or
//! resume from the last checkpoint, then epochs (`epoch::run_epoch`), each followed by its
//! checkpoint and the early-stopping check, and the closing files.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Adam;
use super::cache::FeatureCache;
use super::config::{CacheMode, TrainArgs};
use super::epoch::{Learner, Session, model_prefix_dims, run_epoch};
pub use super::error::TrainError;
use super::error::io_err;
use super::history::{self, EpochRecord};
use super::run_dir::Log;
pub use super::run_dir::RunDir;
use crate::data::LabeledSet;
use crate::data::bad::BadImageLog;
use crate::data::pipeline::Pipeline;
use crate::model::architecture::VGG16_WIDTHS;
use crate::model::head::Head;
use crate::model::layers::values;
use crate::model::saved::{self, ModelMeta};
use crate::model::summary::summarize;
use crate::model::vgg16::Vgg16;
use crate::model::{Classifier, ModelSpec};
use crate::preprocess::Framing;
use crate::preprocess::InputSpec;
use crate::weights::NamedTensor;

/// Training state stored in every checkpoint beside the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub epoch: usize,
    pub adam_step: u64,
    pub seed: u64,
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_val_acc: f64,
    pub best_val_loss: f64,
}

impl TrainState {
    /// Records a finished epoch; returns whether it is the best so far (higher validation
    /// accuracy, or the same with lower validation loss).
    fn push(&mut self, record: EpochRecord, adam_step: u64) -> bool {
        let improved = record.val_acc > self.best_val_acc
            || (record.val_acc == self.best_val_acc && record.val_loss < self.best_val_loss);
        if improved {
            self.best_epoch = record.epoch;
            self.best_val_acc = record.val_acc;
            self.best_val_loss = record.val_loss;
        }
        self.epoch = record.epoch;
        self.adam_step = adam_step;
        self.history.push(record);
        improved
    }

    /// Whether `patience` epochs (0: never) have passed without a better one.
    fn patience_exhausted(&self, patience: usize) -> bool {
        patience > 0 && self.epoch - self.best_epoch >= patience
    }
}

#[derive(Debug)]
pub struct TrainOutcome {
    pub run: PathBuf,
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub skipped: usize,
    pub cache_used: bool,
}

/// A fingerprint of a dataset: file list and labels.
pub fn fingerprint(set: &LabeledSet) -> String {
    let mut h = Sha256::new();
    for c in &set.classes {
        h.update(c.as_bytes());
        h.update(b"\n");
    }
    for s in &set.samples {
        h.update(s.path.to_string_lossy().as_bytes());
        h.update(format!("\t{}\n", s.label).as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts a new run (`resume == false`) or continues the one in `args.out`.
pub fn train(args: TrainArgs, resume: bool, quiet: bool) -> Result<TrainOutcome, TrainError> {
    let run = RunDir(args.out.clone());
    // held until this function returns: no second process may use the folder meanwhile
    let _lock = open_run(&run, resume)?;
    let device = args.backend.device()?;
    crate::gpu::use_precision(args.precision);
    let (train_set, valid_set) = open_data(&args)?;
    let (model, adam, mut state, base_weights) = if resume {
        resume_from(&run, &args, &device)?
    } else {
        start_fresh(&args, &train_set, &device)?
    };
    if model.spec.class_names != train_set.classes {
        return Err(TrainError::Config(format!(
            "the model's classes {:?} differ from the data's {:?}",
            model.spec.class_names, train_set.classes
        )));
    }
    let mut log = Log::open(&run, quiet)?;
    record_start(&run, &args, &model, &state, resume, &mut log)?;
    let pipeline = input_pipeline(&model, &args);
    let caches = open_caches(&run, &args, &model, &train_set, &valid_set)?;
    announce(&mut log, &model, &train_set, &valid_set, caches.as_ref());
    let meta = ModelMeta::new(
        &model,
        base_weights,
        Some(fingerprint(&train_set)),
        Some(train_set.samples.len()),
    );
    let bad_log = BadImageLog::default();
    let session = Session {
        run: &run,
        args: &args,
        seed: state.seed,
        train_set: &train_set,
        valid_set: &valid_set,
        pipeline: &pipeline,
        bad_log: &bad_log,
        device: &device,
    };
    let mut learner = Learner {
        model,
        adam,
        caches,
        bad_train: HashSet::new(),
        bad_valid: HashSet::new(),
    };

    super::interrupt::watch();
    let mut stopped_early = false;
    for epoch in state.epoch + 1..=args.epochs {
        let record = run_epoch(&session, &mut learner, epoch, state.epoch, &mut log)?;
        log.epoch(&record, args.epochs);
        let improved = state.push(record, learner.adam.step);
        checkpoint(&run, &learner.model, &learner.adam, &meta, &state, improved)?;
        abort_hook(epoch);
        if state.patience_exhausted(args.patience) {
            log.line(&format!(
                "early stopping: no better validation accuracy for {} epochs; best was epoch {}",
                args.patience, state.best_epoch
            ));
            stopped_early = true;
            break;
        }
    }
    finish(
        &run,
        state,
        &bad_log,
        &mut log,
        stopped_early,
        learner.caches.is_some(),
    )
}

/// The run folder made and locked; a new run may not overwrite an existing one.
fn open_run(run: &RunDir, resume: bool) -> Result<super::run_lock::RunLock, TrainError> {
    std::fs::create_dir_all(run.0.join("weights")).map_err(io_err(&run.0))?;
    let lock = super::run_lock::acquire(&run.0)?;
    if !resume && run.last().exists() {
        return Err(TrainError::Config(format!(
            "{} already holds a run; use `faceattr train --resume {}` or another --out",
            run.0.display(),
            run.0.display()
        )));
    }
    Ok(lock)
}

/// The training and validation sets: `--valid`, or a seeded split of `--data`.
fn open_data(args: &TrainArgs) -> Result<(LabeledSet, LabeledSet), TrainError> {
    let train_full = LabeledSet::open(&args.data)?;
    match &args.valid {
        Some(v) => {
            let valid = LabeledSet::open(v)?;
            train_full.check_same_classes(&valid)?;
            Ok((train_full, valid))
        }
        None => {
            if !(0.0..1.0).contains(&args.valid_fraction) || args.valid_fraction == 0.0 {
                return Err(TrainError::Config(
                    "--valid-fraction must be in (0, 1) when --valid is not given".into(),
                ));
            }
            Ok(train_full.split(args.valid_fraction, args.seed))
        }
    }
}

/// A new run's `args.json` and `summary.txt`, or a resumed run's note in the log; and
/// `history.csv` rewritten from the checkpoint (the source of truth: after a crash the file
/// may be one epoch ahead).
fn record_start(
    run: &RunDir,
    args: &TrainArgs,
    model: &Classifier,
    state: &TrainState,
    resume: bool,
    log: &mut Log,
) -> Result<(), TrainError> {
    if resume {
        log.line(&format!(
            "resuming {} after epoch {}",
            run.0.display(),
            state.epoch
        ));
    } else {
        let json = serde_json::to_string_pretty(args).unwrap_or_default();
        crate::atomic_file::write(&run.args(), json.as_bytes()).map_err(io_err(&run.args()))?;
        let s = summarize(
            &model.base.widths(),
            model.spec.input_hw,
            model.head.hidden(),
            model.head.classes(),
            model.spec.trainable,
        );
        crate::atomic_file::write(&run.0.join("summary.txt"), s.to_text().as_bytes())
            .map_err(io_err(&run.0))?;
    }
    history::write_csv(&run.history(), &state.history).map_err(io_err(&run.history()))
}

/// Decoding and batching as the model expects its images.
fn input_pipeline(model: &Classifier, args: &TrainArgs) -> Pipeline {
    Pipeline {
        spec: InputSpec {
            height: model.spec.input_hw.0,
            width: model.spec.input_hw.1,
            preprocessing: model.spec.preprocessing,
            interpolation: model.spec.interpolation,
            pixel_limit: args.pixel_limit,
            decoding: model.spec.decoding,
        },
        batch: args.batch,
        workers: args.workers,
        prefetch: 2,
        policy: args.on_bad_image,
    }
}

/// The training and validation feature caches, when the frozen prefix is not empty and the
/// cache is not turned off.
fn open_caches(
    run: &RunDir,
    args: &TrainArgs,
    model: &Classifier,
    train_set: &LabeledSet,
    valid_set: &LabeledSet,
) -> Result<Option<(FeatureCache, FeatureCache)>, TrainError> {
    if args.cache != CacheMode::Auto || model.spec.trainable.first_conv() == 0 {
        return Ok(None);
    }
    let row: usize = model_prefix_dims(model).iter().product();
    let budget = args.cache_memory.saturating_mul(1 << 20);
    let open = |n: usize, name: &str| {
        FeatureCache::new(n, row, args.cache_dtype, budget / 2, &run.0.join(name))
            .map_err(io_err(&run.0))
    };
    Ok(Some((
        open(train_set.samples.len(), "cache-train.bin")?,
        open(valid_set.samples.len(), "cache-valid.bin")?,
    )))
}

/// What the run trains on, what trains, whether features are cached, how images are framed.
fn announce(
    log: &mut Log,
    model: &Classifier,
    train_set: &LabeledSet,
    valid_set: &LabeledSet,
    caches: Option<&(FeatureCache, FeatureCache)>,
) {
    log.line(&format!(
        "training {} images, validating on {} ({} classes: {}); trainable from {}; frozen-feature cache {}",
        train_set.samples.len(),
        valid_set.samples.len(),
        train_set.classes.len(),
        train_set.classes.join(", "),
        model.spec.trainable.name(),
        match (caches, model.spec.trainable.first_conv()) {
            (Some((c, _)), _) => format!("on ({} MiB train, {})", c.size_bytes() >> 20, if c.is_on_disk() { "memory-mapped file" } else { "in memory" }),
            (None, 0) => "off (the whole network trains)".into(),
            (None, _) => "off (--cache off)".into(),
        }
    ));
    log.line(&format!(
        "images framed: {}",
        match model.spec.framing {
            Framing::CelebaAligned =>
                "faces aligned as CelebA's (`predict` will detect and align faces)",
            Framing::Whole => "whole images (`predict` will use whole images)",
        }
    ));
}

/// A test hook standing for a kill right after a checkpoint
/// (`FACEATTR_TEST_ABORT_AFTER_EPOCH=N`).
fn abort_hook(epoch: usize) {
    if std::env::var("FACEATTR_TEST_ABORT_AFTER_EPOCH")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(epoch)
    {
        std::process::abort();
    }
}

/// The end of a run: `skipped.csv`, `curves.png`, the best epoch in the log.
fn finish(
    run: &RunDir,
    state: TrainState,
    bad_log: &BadImageLog,
    log: &mut Log,
    stopped_early: bool,
    cache_used: bool,
) -> Result<TrainOutcome, TrainError> {
    let skipped = bad_log.entries();
    crate::data::bad::write_csv(&run.0.join("skipped.csv"), &skipped)?;
    if !skipped.is_empty() {
        log.line(&format!(
            "{} bad images were skipped (listed in {}):",
            skipped.len(),
            run.0.join("skipped.csv").display()
        ));
        for b in skipped.iter().take(20) {
            log.line(&format!("  {}: {}", b.path.display(), b.reason));
        }
    }
    if let Err(e) = crate::report::plot::curves(&run.0.join("curves.png"), &state.history) {
        log.line(&format!("warning: curves.png not drawn: {e}"));
    }
    log.line(&format!(
        "best: epoch {} (val acc {:.4}, val loss {:.4}) -> {}",
        state.best_epoch,
        state.best_val_acc,
        state.best_val_loss,
        run.best().display()
    ));
    Ok(TrainOutcome {
        run: run.0.clone(),
        history: state.history,
        best_epoch: state.best_epoch,
        stopped_early,
        skipped: skipped.len(),
        cache_used,
    })
}

/// A model, optimiser and training state, with where the base weights came from.
type Start = (Classifier, Adam, TrainState, String);

/// The run's last checkpoint: the model, Adam's moments and step, the training state.
fn resume_from(run: &RunDir, args: &TrainArgs, device: &Device) -> Result<Start, TrainError> {
    let loaded = saved::load(&run.last(), device)?;
    let state: TrainState = loaded
        .training
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| {
            TrainError::Config(format!(
                "{}: no training state; cannot resume",
                run.last().display()
            ))
        })?;
    let mut adam = Adam::new(args.lr, args.conventions);
    adam.step = state.adam_step;
    let mut moments: BTreeMap<String, (Option<NamedTensor>, Option<NamedTensor>)> = BTreeMap::new();
    for (name, t) in &loaded.tensors {
        if let Some(rest) = name.strip_prefix("optimizer/m/") {
            moments.entry(rest.to_string()).or_default().0 = Some(t.clone());
        } else if let Some(rest) = name.strip_prefix("optimizer/v/") {
            moments.entry(rest.to_string()).or_default().1 = Some(t.clone());
        }
    }
    for (name, (m, v)) in moments {
        if let (Some(m), Some(v)) = (m, v) {
            let t = |x: &NamedTensor| {
                Tensor::<1>::from_data(TensorData::new(x.data.clone(), [x.data.len()]), device)
            };
            adam.moments.insert(name, (t(&m), t(&v)));
        }
    }
    let base = loaded.meta.base_weights.clone();
    Ok((loaded.model, adam, state, base))
}

/// A new model from `--weights`, a fresh optimiser and an empty history.
fn start_fresh(
    args: &TrainArgs,
    train_set: &LabeledSet,
    device: &Device,
) -> Result<Start, TrainError> {
    let (model, base) = build_model(args, train_set, device)?;
    let state = TrainState {
        epoch: 0,
        adam_step: 0,
        seed: args.seed,
        history: Vec::new(),
        best_epoch: 0,
        best_val_acc: -1.0,
        best_val_loss: f64::INFINITY,
    };
    Ok((model, Adam::new(args.lr, args.conventions), state, base))
}

fn build_model(
    args: &TrainArgs,
    train: &LabeledSet,
    device: &Device,
) -> Result<(Classifier, String), TrainError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    // The base and the preprocessing its weights expect; a random base takes Keras' caffe.
    let (base, weights_prep, described) = if args.weights == "random" {
        let widths: [usize; 13] = match &args.widths {
            None => VGG16_WIDTHS,
            Some(w) => w
                .clone()
                .try_into()
                .map_err(|_| TrainError::Config("--widths needs 13 numbers".into()))?,
        };
        if widths.contains(&0) {
            return Err(TrainError::Config(
                "--widths: every convolution needs at least 1 channel".into(),
            ));
        }
        let base = Vgg16::random(&widths, &mut rng, device);
        (
            base,
            crate::preprocess::Preprocessing::Caffe,
            format!("random (seed {})", args.seed),
        )
    } else {
        let path = PathBuf::from(&args.weights);
        let ws = crate::weights::load(&path)?;
        (
            Vgg16::from_weights(&ws, device)?,
            ws.preprocessing,
            path.display().to_string(),
        )
    };
    let spec = ModelSpec {
        input_hw: args.input,
        preprocessing: args.preprocess.unwrap_or(weights_prep),
        interpolation: args.interpolation,
        conventions: args.conventions,
        trainable: args.trainable,
        class_names: train.classes.clone(),
        framing: match args.framing {
            Some(f) => f,
            None => crate::data::framing::framing_of(&args.data)?,
        },
        decoding: args.decoding,
    };
    let head = Head::random(
        base.feature_dim(),
        args.head,
        train.classes.len(),
        &mut rng,
        device,
    );
    Ok((Classifier { base, head, spec }, described))
}

/// Channels, height and width of the frozen prefix's output: one cache row.
/// Writes the epoch's checkpoints and history, each atomically: `best.safetensors` when the
/// epoch improved, `last.safetensors` (model, Adam moments and step, training state) always,
/// then `history.csv`.
fn checkpoint(
    run: &RunDir,
    model: &Classifier,
    adam: &Adam,
    meta: &ModelMeta,
    state: &TrainState,
    improved: bool,
) -> Result<(), TrainError> {
    let state_json = serde_json::to_string(state).unwrap_or_default();
    let optimizer: Vec<(String, NamedTensor)> = adam
        .moments
        .iter()
        .flat_map(|(name, (m, v))| {
            [
                (
                    format!("optimizer/m/{name}"),
                    NamedTensor::new(vec![m.dims()[0]], values(m)),
                ),
                (
                    format!("optimizer/v/{name}"),
                    NamedTensor::new(vec![v.dims()[0]], values(v)),
                ),
            ]
        })
        .collect();
    if improved {
        saved::save(
            &run.best(),
            model,
            meta,
            Vec::new(),
            Some(state_json.clone()),
        )?;
    }
    saved::save(&run.last(), model, meta, optimizer, Some(state_json))?;
    history::write_csv(&run.history(), &state.history).map_err(io_err(&run.history()))
}

/// Loaded `args.json` of a run, for `--resume`.
pub fn read_args(run: &Path) -> Result<TrainArgs, TrainError> {
    let path = RunDir(run.to_path_buf()).args();
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}
