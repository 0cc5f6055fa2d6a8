//! The training run: epochs over the pipeline (or the frozen-feature cache), validation,
//! history, crash-safe checkpoints, resume, early stopping, and the run folder.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cache::FeatureCache;
use super::config::{CacheMode, TrainArgs};
use super::history::{self, EpochRecord};
use super::{Adam, train_step_from_prefix};
use crate::data::bad::BadImageLog;
use crate::data::pipeline::{Batch, Pipeline, epoch_order};
use crate::data::{DataError, LabeledSet};
use crate::model::architecture::{VGG16_WIDTHS, spatial_after};
use crate::model::head::Head;
use crate::model::layers::{tensor2, values};
use crate::model::saved::{self, ModelMeta};
use crate::model::summary::summarize;
use crate::model::vgg16::Vgg16;
use crate::model::{Classifier, ModelSpec};
use crate::preprocess::Framing;
use crate::preprocess::InputSpec;
use crate::weights::{NamedTensor, WeightsError};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Backend(#[from] crate::device::BackendUnavailable),
    #[error(transparent)]
    Busy(#[from] super::run_lock::LockError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(
        "the training loss became {loss} in epoch {epoch}; training stopped. The best checkpoint so far is kept in {best}. Try a lower --lr."
    )]
    NonFiniteLoss {
        epoch: usize,
        loss: f32,
        best: PathBuf,
    },
    #[error(
        "interrupted in epoch {epoch}; nothing is half-written: {}. Resume with `faceattr train --resume {}`",
        match done { 0 => "no epoch was finished".to_string(), d => format!("{} holds epoch {d}", last.display()) },
        run.display()
    )]
    Interrupted {
        epoch: usize,
        done: usize,
        last: PathBuf,
        run: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where everything of a run lives.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn args(&self) -> PathBuf {
        self.0.join("args.json")
    }
    pub fn last(&self) -> PathBuf {
        self.0.join("weights/last.safetensors")
    }
    pub fn best(&self) -> PathBuf {
        self.0.join("weights/best.safetensors")
    }
    pub fn history(&self) -> PathBuf {
        self.0.join("history.csv")
    }
    pub fn log(&self) -> PathBuf {
        self.0.join("train.log")
    }
}

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

#[derive(Debug)]
pub struct TrainOutcome {
    pub run: PathBuf,
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub skipped: usize,
    pub cache_used: bool,
}

/// Lines for the terminal and `train.log`.
struct Log {
    file: std::fs::File,
    quiet: bool,
}

impl Log {
    fn line(&mut self, s: &str) {
        if !self.quiet {
            println!("{s}");
        }
        let _ = writeln!(self.file, "{s}");
    }
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
    std::fs::create_dir_all(run.0.join("weights")).map_err(io_err(&run.0))?;
    // Held until this function returns: no second process may use the folder meanwhile.
    let _lock = super::run_lock::acquire(&run.0)?;
    if !resume && run.last().exists() {
        return Err(TrainError::Config(format!(
            "{} already holds a run; use `faceattr train --resume {}` or another --out",
            run.0.display(),
            run.0.display()
        )));
    }
    let device = args.backend.device()?;

    let train_full = LabeledSet::open(&args.data)?;
    let (train_set, valid_set) = match &args.valid {
        Some(v) => {
            let valid = LabeledSet::open(v)?;
            train_full.check_same_classes(&valid)?;
            (train_full, valid)
        }
        None => {
            if !(0.0..1.0).contains(&args.valid_fraction) || args.valid_fraction == 0.0 {
                return Err(TrainError::Config(
                    "--valid-fraction must be in (0, 1) when --valid is not given".into(),
                ));
            }
            train_full.split(args.valid_fraction, args.seed)
        }
    };

    let (mut model, mut adam, mut state, base_weights) = if resume {
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

    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.log())
        .map_err(io_err(&run.log()))?;
    let mut log = Log {
        file: log_file,
        quiet,
    };
    if !resume {
        let json = serde_json::to_string_pretty(&args).unwrap_or_default();
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
    } else {
        log.line(&format!(
            "resuming {} after epoch {}",
            run.0.display(),
            state.epoch
        ));
    }
    // The checkpoint is the source of truth; history.csv may be one epoch ahead after a crash.
    history::write_csv(&run.history(), &state.history).map_err(io_err(&run.history()))?;

    let spec = InputSpec {
        height: model.spec.input_hw.0,
        width: model.spec.input_hw.1,
        preprocessing: model.spec.preprocessing,
        interpolation: model.spec.interpolation,
        pixel_limit: args.pixel_limit,
        decoding: model.spec.decoding,
    };
    let pipeline = Pipeline {
        spec,
        batch: args.batch,
        workers: args.workers,
        prefetch: 2,
        policy: args.on_bad_image,
    };
    let first = model.spec.trainable.first_conv();
    let use_cache = args.cache == CacheMode::Auto && first > 0;
    let row: usize = model_prefix_dims(&model).iter().product();
    let budget = args.cache_memory.saturating_mul(1 << 20);
    let mut caches = if use_cache {
        let mk = |n: usize, name: &str| {
            FeatureCache::new(n, row, args.cache_dtype, budget / 2, &run.0.join(name))
                .map_err(io_err(&run.0))
        };
        Some((
            mk(train_set.samples.len(), "cache-train.bin")?,
            mk(valid_set.samples.len(), "cache-valid.bin")?,
        ))
    } else {
        None
    };
    log.line(&format!(
        "training {} images, validating on {} ({} classes: {}); trainable from {}; frozen-feature cache {}",
        train_set.samples.len(),
        valid_set.samples.len(),
        train_set.classes.len(),
        train_set.classes.join(", "),
        model.spec.trainable.name(),
        match (&caches, first) {
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

    let bad_log = BadImageLog::default();
    let mut bad_train: HashSet<usize> = HashSet::new();
    let mut bad_valid: HashSet<usize> = HashSet::new();
    let meta = ModelMeta::new(
        &model,
        base_weights,
        Some(fingerprint(&train_set)),
        Some(train_set.samples.len()),
    );
    let mut stopped_early = false;

    super::interrupt::watch();
    let interrupted = |epoch: usize, done: usize| TrainError::Interrupted {
        epoch,
        done,
        last: run.last(),
        run: run.0.clone(),
    };
    for epoch in state.epoch + 1..=args.epochs {
        let t_epoch = Instant::now();
        let order = epoch_order(train_set.samples.len(), state.seed, epoch as u64, true);
        let bar = crate::progress::items_bar(
            order.len() as u64,
            &format!("epoch {epoch}/{}", args.epochs),
        );
        let t_train = Instant::now();
        let feed = Feed {
            set: &train_set,
            pipeline: &pipeline,
            bad_log: &bad_log,
            device: &device,
        };
        let Pass {
            loss_sum,
            correct,
            seen,
            worst_loss,
            waited,
            cached: cached_epoch,
        } = train_pass(
            &mut model,
            &mut adam,
            caches.as_mut().map(|(t, _)| t),
            &feed,
            &order,
            &mut bad_train,
            &bar,
            &|| interrupted(epoch, state.epoch),
        )?;
        bar.finish_and_clear();
        let train_secs = t_train.elapsed().as_secs_f64();
        if !worst_loss.is_finite() {
            log.line(&format!(
                "epoch {epoch}: training loss {worst_loss}; stopping"
            ));
            return Err(TrainError::NonFiniteLoss {
                epoch,
                loss: worst_loss,
                best: run.best(),
            });
        }

        if args.bn_recalibrate {
            match caches.as_ref() {
                Some((cache, _)) if all_cached(cache, &order, &bad_train) => {
                    let kept: Vec<usize> = order
                        .iter()
                        .copied()
                        .filter(|i| !bad_train.contains(i))
                        .collect();
                    recalibrate_bn(&mut model, cache, &kept, args.batch, &device);
                }
                _ => log.line("--bn-recalibrate needs the feature cache; skipped this epoch"),
            }
        }
        let (val_loss, val_acc) = validate(
            &model,
            &valid_set,
            &pipeline,
            &bad_log,
            &mut bad_valid,
            caches.as_mut().map(|(_, v)| v),
            &device,
        )?;
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss,
            val_acc,
            images_per_s: seen as f64 / train_secs.max(1e-9),
            elapsed_s: t_epoch.elapsed().as_secs_f64(),
            data_wait_s: waited,
            cached: cached_epoch,
        };
        log.line(&format!(
            "epoch {epoch:>3}/{}: loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} | {:.1} img/s, {:.1} s{}",
            args.epochs, record.train_loss, record.train_acc, val_loss, val_acc, record.images_per_s, record.elapsed_s,
            if cached_epoch { " (cached features)" } else { "" }
        ));
        state.history.push(record);
        state.epoch = epoch;
        state.adam_step = adam.step;
        let improved = val_acc > state.best_val_acc
            || (val_acc == state.best_val_acc && val_loss < state.best_val_loss);
        if improved {
            state.best_epoch = epoch;
            state.best_val_acc = val_acc;
            state.best_val_loss = val_loss;
        }
        checkpoint(&run, &model, &adam, &meta, &state, improved)?;
        if std::env::var("FACEATTR_TEST_ABORT_AFTER_EPOCH")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            == Some(epoch)
        {
            std::process::abort(); // a test hook standing for a kill right after a checkpoint
        }
        if args.patience > 0 && epoch - state.best_epoch >= args.patience {
            log.line(&format!(
                "early stopping: no better validation accuracy for {} epochs; best was epoch {}",
                args.patience, state.best_epoch
            ));
            stopped_early = true;
            break;
        }
    }

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
        run: run.0,
        history: state.history,
        best_epoch: state.best_epoch,
        stopped_early,
        skipped: skipped.len(),
        cache_used: caches.is_some(),
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

/// Where a pass's images come from.
struct Feed<'a> {
    set: &'a LabeledSet,
    pipeline: &'a Pipeline,
    bad_log: &'a BadImageLog,
    device: &'a Device,
}

/// What one pass over the training set measured.
struct Pass {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    /// The first non-finite batch loss, else 0.
    worst_loss: f32,
    /// Seconds spent waiting for decoded batches.
    waited: f64,
    /// Whether every batch came from the feature cache.
    cached: bool,
}

/// One epoch of optimisation steps over `order`: from the feature cache when every image is
/// in it, else decoded by the pipeline (filling the cache on the way). Images that could not be
/// read join `bad`. Stops at a non-finite loss, or with `interrupted()` after Ctrl-C.
#[allow(clippy::too_many_arguments)]
fn train_pass(
    model: &mut Classifier,
    adam: &mut Adam,
    mut cache: Option<&mut FeatureCache>,
    feed: &Feed<'_>,
    order: &[usize],
    bad: &mut HashSet<usize>,
    bar: &indicatif::ProgressBar,
    interrupted: &dyn Fn() -> TrainError,
) -> Result<Pass, TrainError> {
    let device = feed.device;
    let mut pass = Pass {
        loss_sum: 0.0,
        correct: 0,
        seen: 0,
        worst_loss: 0.0,
        waited: 0.0,
        cached: false,
    };
    let mut step =
        |model: &mut Classifier, adam: &mut Adam, prefix: Tensor<4>, labels: &[usize]| {
            let y = one_hot(labels, model.head.classes(), device);
            let out = train_step_from_prefix(model, adam, prefix, y);
            pass.loss_sum += out.loss as f64 * labels.len() as f64;
            pass.correct += count_correct(&out.logits, labels, model.head.classes());
            pass.seen += labels.len();
            bar.inc(labels.len() as u64);
            if !out.loss.is_finite() && pass.worst_loss.is_finite() {
                pass.worst_loss = out.loss;
            }
            out.loss.is_finite()
        };
    match cache.as_deref_mut() {
        Some(c) if all_cached(c, order, bad) => {
            pass.cached = true;
            for chunk in order.chunks(feed.pipeline.batch.max(1)) {
                if super::interrupt::requested() {
                    return Err(interrupted());
                }
                let idx: Vec<usize> = chunk.iter().copied().filter(|i| !bad.contains(i)).collect();
                if idx.is_empty() {
                    continue;
                }
                let labels: Vec<usize> = idx.iter().map(|&i| feed.set.samples[i].label).collect();
                let prefix = from_cache(c, &idx, model_prefix_dims(model), device);
                if !step(model, adam, prefix, &labels) {
                    break;
                }
            }
        }
        _ => {
            let mut delivered: HashSet<usize> = HashSet::new();
            let stats = feed.pipeline.for_each_batch(
                &feed.set.samples,
                order,
                feed.bad_log,
                |b: Batch| -> Result<(), TrainError> {
                    if super::interrupt::requested() {
                        return Err(interrupted());
                    }
                    let prefix = model.frozen_prefix(batch_tensor(&b, &feed.pipeline.spec, device));
                    if let Some(c) = cache.as_deref_mut() {
                        store(c, &b.sample_indices, &prefix);
                    }
                    delivered.extend(b.sample_indices.iter().copied());
                    step(model, adam, prefix, &b.labels);
                    Ok(())
                },
            )?;
            pass.waited = stats.waited.as_secs_f64();
            bad.extend(order.iter().copied().filter(|i| !delivered.contains(i)));
        }
    }
    Ok(pass)
}

fn model_prefix_dims(model: &Classifier) -> [usize; 3] {
    let first = model.spec.trainable.first_conv();
    let (h, w) = spatial_after(model.spec.input_hw, first - usize::from(first > 0));
    [
        model.base.convs[first.saturating_sub(1)].out_channels(),
        h,
        w,
    ]
}

/// Sets the head's BatchNorm moving statistics to the mean and variance of its inputs over
/// `samples` (cached prefixes), under the current weights: what the moving averages would
/// reach if the weights stopped changing. The variance is unbiased where the conventions'
/// moving variance is.
fn recalibrate_bn(
    model: &mut Classifier,
    cache: &FeatureCache,
    samples: &[usize],
    batch: usize,
    device: &Device,
) {
    let n = model.head.hidden();
    let (mut sum, mut sq) = (vec![0.0f64; n], vec![0.0f64; n]);
    for chunk in samples.chunks(batch.max(1)) {
        let prefix = from_cache(cache, chunk, model_prefix_dims(model), device);
        let h = values(&model.head.bn_inputs(model.features_from_prefix(prefix)));
        for row in h.chunks(n) {
            for (j, &v) in row.iter().enumerate() {
                sum[j] += v as f64;
                sq[j] += v as f64 * v as f64;
            }
        }
    }
    let count = samples.len() as f64;
    if count < 2.0 {
        return;
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let unbiased = model.spec.conventions.bn_unbiased_moving_variance();
    let var: Vec<f32> = sum
        .iter()
        .zip(&sq)
        .map(|(s, q)| {
            let biased = (q / count - (s / count).powi(2)).max(0.0);
            (if unbiased {
                biased * count / (count - 1.0)
            } else {
                biased
            }) as f32
        })
        .collect();
    model.head.set_moving_stats(
        crate::model::layers::tensor1(&mean, device),
        crate::model::layers::tensor1(&var, device),
    );
}

fn all_cached(cache: &FeatureCache, order: &[usize], bad: &HashSet<usize>) -> bool {
    order.iter().all(|&i| bad.contains(&i) || cache.has(i))
}

fn from_cache(cache: &FeatureCache, idx: &[usize], dims: [usize; 3], device: &Device) -> Tensor<4> {
    let row: usize = dims.iter().product();
    let mut data = vec![0.0f32; idx.len() * row];
    for (k, &i) in idx.iter().enumerate() {
        cache.get(i, &mut data[k * row..(k + 1) * row]);
    }
    Tensor::from_data(
        TensorData::new(data, [idx.len(), dims[0], dims[1], dims[2]]),
        device,
    )
}

fn store(cache: &mut FeatureCache, idx: &[usize], prefix: &Tensor<4>) {
    let v = values(prefix);
    let row = v.len() / idx.len().max(1);
    for (k, &i) in idx.iter().enumerate() {
        cache.put(i, &v[k * row..(k + 1) * row]);
    }
}

pub(crate) fn batch_tensor(b: &Batch, spec: &InputSpec, device: &Device) -> Tensor<4> {
    Tensor::from_data(
        TensorData::new(b.pixels.clone(), [b.len(), 3, spec.height, spec.width]),
        device,
    )
}

pub(crate) fn one_hot(labels: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0.0f32; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l] = 1.0;
    }
    tensor2(&v, [labels.len(), classes], device)
}

/// Predictions are the argmax of the outputs, as the reference's test accuracy.
pub(crate) fn count_correct(logits: &[f32], labels: &[usize], classes: usize) -> usize {
    logits
        .chunks(classes)
        .zip(labels)
        .filter(|(row, l)| crate::eval::metrics::argmax(row) == **l)
        .count()
}

#[allow(clippy::too_many_arguments)]
fn validate(
    model: &Classifier,
    set: &LabeledSet,
    pipeline: &Pipeline,
    bad_log: &BadImageLog,
    bad: &mut HashSet<usize>,
    mut cache: Option<&mut FeatureCache>,
    device: &Device,
) -> Result<(f64, f64), TrainError> {
    let order: Vec<usize> = (0..set.samples.len()).collect();
    let classes = model.head.classes();
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    let mut eval = |prefix: Tensor<4>, labels: &[usize]| {
        let logits = values(&model.logits_from_prefix(prefix));
        let rows: Vec<Vec<f32>> = logits.chunks(classes).map(<[f32]>::to_vec).collect();
        let loss = crate::eval::metrics::bce_logits(&rows, labels);
        loss_sum += loss * labels.len() as f64;
        correct += count_correct(&logits, labels, classes);
        seen += labels.len();
    };
    match cache.as_deref_mut() {
        Some(c) if all_cached(c, &order, bad) => {
            for chunk in order.chunks(pipeline.batch.max(1)) {
                let idx: Vec<usize> = chunk.iter().copied().filter(|i| !bad.contains(i)).collect();
                if idx.is_empty() {
                    continue;
                }
                let labels: Vec<usize> = idx.iter().map(|&i| set.samples[i].label).collect();
                eval(
                    from_cache(c, &idx, model_prefix_dims(model), device),
                    &labels,
                );
            }
        }
        _ => {
            let mut delivered = HashSet::new();
            pipeline.for_each_batch(
                &set.samples,
                &order,
                bad_log,
                |b: Batch| -> Result<(), TrainError> {
                    let prefix = model.frozen_prefix(batch_tensor(&b, &pipeline.spec, device));
                    if let Some(c) = cache.as_deref_mut() {
                        store(c, &b.sample_indices, &prefix);
                    }
                    delivered.extend(b.sample_indices.iter().copied());
                    eval(prefix, &b.labels);
                    Ok(())
                },
            )?;
            bad.extend(order.iter().copied().filter(|i| !delivered.contains(i)));
        }
    }
    Ok((
        loss_sum / seen.max(1) as f64,
        correct as f64 / seen.max(1) as f64,
    ))
}

/// Loaded `args.json` of a run, for `--resume`.
pub fn read_args(run: &Path) -> Result<TrainArgs, TrainError> {
    let path = RunDir(run.to_path_buf()).args();
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}
