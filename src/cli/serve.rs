//! `faceattr serve`: the model behind HTTP, with a web page.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::faces::DetectorArgs;
use crate::device::Backend;
use crate::faces::DetectOptions;
use crate::serve::{ServeConfig, start};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  faceattr serve --model runs/gender/weights/best.safetensors
  curl -F image=@photo.jpg http://127.0.0.1:8080/v1/predict
  curl --data-binary @photo.jpg 'http://127.0.0.1:8080/v1/predict?faces=detect&explain=true'

Endpoints: GET / (a web page: choose, drop or take a photo), POST /v1/predict (a raw image body
or a multipart form with one or more images; ?faces=auto|detect|whole&explain=true),
GET /v1/model (the model card as JSON), GET /healthz, GET /readyz, GET /metrics (Prometheus).
Answers are the JSON of `faceattr predict --json`: the object for a raw body, an array for a
form. Errors are {\"error\": reason}: 400 not an image, 413 body too large, 422 truncated or
over the pixel limit, 503 queue full (with Retry-After), 504 too slow. SIGTERM and Ctrl-C
finish the requests in flight, then stop.")]
pub struct ServeArgs {
    /// A model saved by `faceattr train`.
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most images in one forward pass.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Longest the first request of a batch waits for others (ms).
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Requests that may wait for the model; more are answered 503.
    #[arg(long, default_value_t = 128)]
    pub queue: usize,
    /// Largest request body (MB).
    #[arg(long, default_value_t = 20)]
    pub max_body_mb: usize,
    /// Largest image (pixels), checked from its header before decoding.
    #[arg(long, default_value_t = crate::data::decode::DEFAULT_PIXEL_LIMIT)]
    pub pixel_limit: u64,
    /// Longest a request may take (s); then 504.
    #[arg(long, default_value_t = 30)]
    pub timeout_s: u64,
    /// Images decoded and framed at once (default: the number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    pub backend: Backend,
    #[command(flatten)]
    pub detector: DetectorArgs,
}

impl ServeArgs {
    pub fn config(&self) -> ServeConfig {
        ServeConfig {
            model: self.model.clone(),
            host: self.host.clone(),
            port: self.port,
            max_batch: self.max_batch,
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue: self.queue,
            body_limit: self.max_body_mb.saturating_mul(1 << 20),
            pixel_limit: self.pixel_limit,
            timeout: Duration::from_secs(self.timeout_s.max(1)),
            workers: self
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            backend: self.backend,
            detector: self.detector.detector.clone(),
            detect: DetectOptions {
                sizes: self.detector.detect_size.clone(),
                min_score: self.detector.min_score,
                nms: self.detector.nms,
                ..DetectOptions::default()
            },
        }
    }
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    let server = start(a.config(), true)?;
    println!(
        "faceattr serve: listening on http://{} (model {}, batches up to {} images, {} ms wait)",
        server.addr,
        a.model.display(),
        a.max_batch,
        a.max_wait_ms
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.wait()?;
    eprintln!("faceattr serve: stopped");
    Ok(())
}
