//! Dynamic batching: one thread owns the model; requests hand it their framed images through a
//! bounded queue, and it runs whatever arrived together as one forward pass (up to
//! `max_batch` images, waiting at most `max_wait` after the first). A full queue is refused at
//! once (the caller answers 503), so a burst never grows memory without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use image::RgbImage;

use super::metrics::Metrics;
use crate::model::Classifier;
use crate::model::layers::values;

/// Work for the model: images already at its input size.
pub struct Job {
    pub images: Vec<RgbImage>,
    /// Also a Grad-CAM overlay per image (PNG bytes).
    pub explain: bool,
    pub reply: tokio::sync::oneshot::Sender<Result<JobOutput, String>>,
}

#[derive(Debug, Default)]
pub struct JobOutput {
    /// Class probabilities per image.
    pub probs: Vec<Vec<f32>>,
    /// PNG bytes per image, when asked.
    pub gradcam: Vec<Vec<u8>>,
}

/// The sending side, shared by the request handlers.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
    /// Requests being decoded and framed: jobs that may join the next batch soon.
    preparing: Arc<AtomicUsize>,
}

/// Counts a request as being prepared for as long as it lives.
pub struct Preparing(Arc<AtomicUsize>);

impl Drop for Preparing {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub enum Submit {
    Queued,
    /// The queue is full: come back later.
    Full,
    /// The model thread has stopped.
    Closed,
}

impl Batcher {
    /// Starts the model thread. `capacity` jobs may wait at once.
    pub fn start(
        model: Classifier,
        device: Device,
        max_batch: usize,
        max_wait: Duration,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Batcher, std::thread::JoinHandle<()>)> {
        let (tx, rx) = sync_channel(capacity.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let preparing = Arc::new(AtomicUsize::new(0));
        let waits = Waits {
            queued: queued.clone(),
            preparing: preparing.clone(),
            max_batch: max_batch.max(1),
            max_wait,
        };
        let handle = std::thread::Builder::new()
            .name("faceattr-model".into())
            .spawn(move || model_loop(model, device, rx, waits, metrics))?;
        Ok((
            Batcher {
                tx,
                queued,
                preparing,
            },
            handle,
        ))
    }

    /// Marks a request as on its way to the queue until the guard is dropped: while any is,
    /// a batch waits up to `max_wait` for it; when none is, a batch runs at once (a lone
    /// client never pays the wait).
    pub fn preparing(&self) -> Preparing {
        self.preparing.fetch_add(1, Ordering::SeqCst);
        Preparing(self.preparing.clone())
    }

    pub fn submit(&self, job: Job) -> Submit {
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Submit::Queued,
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                match e {
                    TrySendError::Full(_) => Submit::Full,
                    TrySendError::Disconnected(_) => Submit::Closed,
                }
            }
        }
    }

    /// Jobs waiting for the model.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

/// When the model thread waits for more work before a batch.
struct Waits {
    queued: Arc<AtomicUsize>,
    preparing: Arc<AtomicUsize>,
    max_batch: usize,
    max_wait: Duration,
}

fn model_loop(
    model: Classifier,
    device: Device,
    rx: Receiver<Job>,
    w: Waits,
    metrics: Arc<Metrics>,
) {
    let take = |job: Job, jobs: &mut Vec<Job>, n: &mut usize| {
        w.queued.fetch_sub(1, Ordering::SeqCst);
        *n += job.images.len();
        jobs.push(job);
    };
    // Ends when every sender is gone (the server has shut down).
    while let Ok(first) = rx.recv() {
        let mut jobs = Vec::new();
        let mut n = 0;
        take(first, &mut jobs, &mut n);
        let deadline = Instant::now() + w.max_wait;
        while n < w.max_batch {
            // what is already queued joins without waiting
            if let Ok(job) = rx.try_recv() {
                take(job, &mut jobs, &mut n);
                continue;
            }
            // nothing else on its way: waiting would only delay this batch
            if w.preparing.load(Ordering::SeqCst) == 0 {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match rx.recv_timeout(left.min(Duration::from_millis(1))) {
                Ok(job) => take(job, &mut jobs, &mut n),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics.batch(n);
        run_batch(&model, &device, jobs);
    }
}

/// One forward pass over every image of `jobs`, then Grad-CAM for the jobs that asked. A
/// panic inside the model fails these jobs with a message and leaves the thread running.
fn run_batch(model: &Classifier, device: &Device, jobs: Vec<Job>) {
    let images: Vec<RgbImage> = jobs.iter().flat_map(|j| j.images.iter().cloned()).collect();
    let classes = model.head.classes();
    let spec = crate::eval::predict::input_spec(model);
    let forward = crate::panics::contained(|| {
        if images.is_empty() {
            return Vec::new();
        }
        values(&model.probabilities(spec.batch(&images, device)))
            .chunks(classes)
            .map(<[f32]>::to_vec)
            .collect::<Vec<_>>()
    });
    let mut rows = match forward {
        Ok(rows) => rows.into_iter(),
        Err(_) => {
            for j in jobs {
                let _ = j.reply.send(Err("the model failed on this batch".into()));
            }
            return;
        }
    };
    for job in jobs {
        let probs: Vec<Vec<f32>> = rows.by_ref().take(job.images.len()).collect();
        let gradcam = if job.explain && !job.images.is_empty() {
            let labels: Vec<usize> = probs
                .iter()
                .map(|p| crate::eval::metrics::argmax(p))
                .collect();
            let maps = crate::panics::contained(|| {
                crate::eval::gradcam::explain(model, &job.images, &labels, device)
            });
            match maps {
                Ok(maps) => maps.iter().map(png_bytes).collect(),
                Err(_) => {
                    let _ = job.reply.send(Err("Grad-CAM failed on this image".into()));
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        // A client that went away no longer waits for its answer: nothing to do.
        let _ = job.reply.send(Ok(JobOutput { probs, gradcam }));
    }
}

fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png);
    out
}
