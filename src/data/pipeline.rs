//! The input pipeline: decode + resize + preprocess on worker threads with a bounded prefetch
//! queue, so memory stays flat whatever the dataset size. Worker `w` prepares batches
//! w, w+W, w+2W… into its own bounded queue and the consumer reads the queues in turn, so
//! batches arrive in a fixed order whatever the number of workers. The order of an epoch
//! comes from `(seed, epoch)` alone, so any epoch can be reproduced on its own.

use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::bad::{BadImageLog, BadImagePolicy};
use super::{DataError, Sample};
use crate::preprocess::InputSpec;

/// A preprocessed batch, NCHW, of the samples that decoded.
pub struct Batch {
    /// Positions in the sample list of the images in this batch.
    pub sample_indices: Vec<usize>,
    pub labels: Vec<usize>,
    pub pixels: Vec<f32>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    pub spec: InputSpec,
    pub batch: usize,
    pub workers: usize,
    /// Batches each worker may hold ready ahead of the consumer.
    pub prefetch: usize,
    pub policy: BadImagePolicy,
}

/// What one pass cost the consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassStats {
    pub images: usize,
    /// Time the consumer spent waiting for a batch (the pipeline being the bottleneck).
    pub waited: Duration,
}

/// The order of an epoch: a permutation from `(seed, epoch)` or the identity.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let key = seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(key));
    }
    order
}

impl Pipeline {
    /// Feeds `consume` every batch of `order` (indices into `samples`), in order. Bad images are
    /// recorded in `log` and skipped or stop the pass, as the policy says.
    pub fn for_each_batch<E: From<DataError>>(
        &self,
        samples: &[Sample],
        order: &[usize],
        log: &BadImageLog,
        mut consume: impl FnMut(Batch) -> Result<(), E>,
    ) -> Result<PassStats, E> {
        let batch = self.batch.max(1);
        let workers = self.workers.max(1);
        let chunks: Vec<&[usize]> = order.chunks(batch).collect();
        let mut stats = PassStats::default();
        std::thread::scope(|scope| -> Result<PassStats, E> {
            let mut queues: Vec<Receiver<Result<Batch, DataError>>> = Vec::with_capacity(workers);
            for w in 0..workers {
                let (tx, rx) = sync_channel(self.prefetch.max(1));
                queues.push(rx);
                let chunks = &chunks;
                scope.spawn(move || {
                    for chunk in chunks.iter().skip(w).step_by(workers) {
                        // A panic while preparing (decoders are contained already) stops the
                        // pass with an error naming the batch, instead of killing the process.
                        let prepared = crate::panics::contained(|| {
                            self.prepare(samples, chunk, log)
                        })
                        .unwrap_or_else(|msg| {
                            let first = chunk.first().map(|&i| samples[i].path.clone());
                            Err(DataError::Invalid {
                                path: first.unwrap_or_default(),
                                reason: format!(
                                    "preparing the batch that starts with this image failed ({msg})"
                                ),
                            })
                        });
                        let stop = prepared.is_err();
                        if tx.send(prepared).is_err() || stop {
                            return; // consumer gone, or the pass is over
                        }
                    }
                });
            }
            for b in 0..chunks.len() {
                let t = Instant::now();
                let next = queues[b % workers].recv();
                stats.waited += t.elapsed();
                match next {
                    Ok(Ok(batch)) => {
                        stats.images += batch.len();
                        if !batch.is_empty() {
                            consume(batch)?;
                        }
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    // every worker sends its batches or an error before it ends
                    Err(_) => {
                        return Err(DataError::Invalid {
                            path: Default::default(),
                            reason: format!("a decoding worker ended before batch {b}"),
                        }
                        .into());
                    }
                }
            }
            Ok(stats)
        })
    }

    fn prepare(
        &self,
        samples: &[Sample],
        chunk: &[usize],
        log: &BadImageLog,
    ) -> Result<Batch, DataError> {
        let plane = 3 * self.spec.height * self.spec.width;
        let mut out = Batch {
            sample_indices: Vec::new(),
            labels: Vec::new(),
            pixels: Vec::with_capacity(chunk.len() * plane),
        };
        for &i in chunk {
            match self.spec.load(&samples[i].path) {
                Ok(img) => {
                    let start = out.pixels.len();
                    out.pixels.resize(start + plane, 0.0);
                    self.spec
                        .preprocessing
                        .write_chw(&img, &mut out.pixels[start..]);
                    out.sample_indices.push(i);
                    out.labels.push(samples[i].label);
                }
                Err(e) => log.record(e, self.policy)?,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_is_a_permutation_reproducible_per_epoch() {
        let a = epoch_order(100, 7, 3, true);
        assert_eq!(a, epoch_order(100, 7, 3, true));
        assert_ne!(a, epoch_order(100, 7, 4, true));
        assert_ne!(a, epoch_order(100, 8, 3, true));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(epoch_order(5, 1, 1, false), vec![0, 1, 2, 3, 4]);
    }
}
