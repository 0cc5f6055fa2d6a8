//! One epoch of a run: a pass of optimisation steps over the shuffled training set (from the
//! frozen-feature cache when every image is in it, else through the input pipeline, filling
//! the cache), the optional BatchNorm recalibration, and validation.

use std::collections::HashSet;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};

use super::cache::FeatureCache;
use super::config::TrainArgs;
use super::error::TrainError;
use super::history::EpochRecord;
use super::run_dir::{Log, RunDir};
use super::{Adam, train_step_from_prefix};
use crate::data::LabeledSet;
use crate::data::bad::BadImageLog;
use crate::data::pipeline::{Batch, Pipeline, epoch_order};
use crate::model::Classifier;
use crate::model::architecture::spatial_after;
use crate::model::layers::{tensor2, values};
use crate::preprocess::InputSpec;

/// What stays the same over a run's epochs.
pub(super) struct Session<'a> {
    pub(super) run: &'a RunDir,
    pub(super) args: &'a TrainArgs,
    /// The run's seed, as its checkpoint records it.
    pub(super) seed: u64,
    pub(super) train_set: &'a LabeledSet,
    pub(super) valid_set: &'a LabeledSet,
    pub(super) pipeline: &'a Pipeline,
    pub(super) bad_log: &'a BadImageLog,
    pub(super) device: &'a Device,
}

/// What an epoch changes: the model, Adam, the feature caches, and the images found bad.
pub(super) struct Learner {
    pub(super) model: Classifier,
    pub(super) adam: Adam,
    pub(super) caches: Option<(FeatureCache, FeatureCache)>,
    pub(super) bad_train: HashSet<usize>,
    pub(super) bad_valid: HashSet<usize>,
}

/// One epoch: a pass of optimisation steps over the shuffled training set, the BatchNorm
/// recalibration when asked for, and validation. `done` is the last finished epoch.
pub(super) fn run_epoch(
    s: &Session<'_>,
    l: &mut Learner,
    epoch: usize,
    done: usize,
    log: &mut Log,
) -> Result<EpochRecord, TrainError> {
    let t_epoch = Instant::now();
    let order = epoch_order(s.train_set.samples.len(), s.seed, epoch as u64, true);
    let bar = crate::progress::items_bar(
        order.len() as u64,
        &format!("epoch {epoch}/{}", s.args.epochs),
    );
    let feed = Feed {
        set: s.train_set,
        pipeline: s.pipeline,
        bad_log: s.bad_log,
        device: s.device,
    };
    let interrupted = || TrainError::Interrupted {
        epoch,
        done,
        last: s.run.last(),
        run: s.run.0.clone(),
    };
    let pass = train_pass(l, &feed, &order, &bar, &interrupted)?;
    bar.finish_and_clear();
    let train_secs = t_epoch.elapsed().as_secs_f64();
    if !pass.worst_loss.is_finite() {
        log.line(&format!(
            "epoch {epoch}: training loss {}; stopping",
            pass.worst_loss
        ));
        return Err(TrainError::NonFiniteLoss {
            epoch,
            loss: pass.worst_loss,
            best: s.run.best(),
        });
    }
    if s.args.bn_recalibrate {
        match l.caches.as_ref() {
            Some((cache, _)) if all_cached(cache, &order, &l.bad_train) => {
                let kept: Vec<usize> = order
                    .iter()
                    .copied()
                    .filter(|i| !l.bad_train.contains(i))
                    .collect();
                recalibrate_bn(&mut l.model, cache, &kept, s.args.batch, s.device);
            }
            _ => log.line("--bn-recalibrate needs the feature cache; skipped this epoch"),
        }
    }
    let (val_loss, val_acc) = validate(s, l)?;
    Ok(EpochRecord {
        epoch,
        train_loss: pass.loss_sum / pass.seen.max(1) as f64,
        train_acc: pass.correct as f64 / pass.seen.max(1) as f64,
        val_loss,
        val_acc,
        images_per_s: pass.seen as f64 / train_secs.max(1e-9),
        elapsed_s: t_epoch.elapsed().as_secs_f64(),
        data_wait_s: pass.waited,
        cached: pass.cached,
    })
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
/// read join the learner's bad training images. Stops at a non-finite loss, or with `interrupted()` after Ctrl-C.
fn train_pass(
    l: &mut Learner,
    feed: &Feed<'_>,
    order: &[usize],
    bar: &indicatif::ProgressBar,
    interrupted: &dyn Fn() -> TrainError,
) -> Result<Pass, TrainError> {
    let Learner {
        model,
        adam,
        caches,
        bad_train: bad,
        ..
    } = l;
    let mut cache = caches.as_mut().map(|(t, _)| t);
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

pub(super) fn model_prefix_dims(model: &Classifier) -> [usize; 3] {
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

/// Validation loss and accuracy over the validation set: from its feature cache when every
/// image is in it, else through the pipeline (filling the cache). Images that could not be read
/// join the learner's bad validation images.
fn validate(s: &Session<'_>, l: &mut Learner) -> Result<(f64, f64), TrainError> {
    let (set, pipeline, bad_log, device) = (s.valid_set, s.pipeline, s.bad_log, s.device);
    let Learner {
        model,
        caches,
        bad_valid: bad,
        ..
    } = l;
    let model = &*model;
    let mut cache = caches.as_mut().map(|(_, v)| v);
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
