//! `faceattr serve`: the model kept loaded behind HTTP. Requests are decoded and framed (faces
//! detected and aligned, or the whole image resized) on worker threads, then queued for the
//! one thread that owns the model, which runs whatever arrived together as one batch.
//! Nothing a client sends can take the server down: bodies are bounded, images are checked
//! before they are decoded, a full queue answers 503, and a slow answer times out.
//!
//! - [`batcher`]: the queue and the model thread.
//! - [`routes`]: the endpoints and the web page.
//! - [`metrics`]: what `/metrics` reports.

pub mod batcher;
pub mod metrics;
pub mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::faces::{AlignTemplate, DetectOptions, FaceCropper, FaceDetector};

/// Everything `serve` needs to start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub model: PathBuf,
    pub host: String,
    /// 0 picks a free port (printed at start).
    pub port: u16,
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Requests that may wait for the model at once; more get 503.
    pub queue: usize,
    /// Largest request body in bytes; more gets 413.
    pub body_limit: usize,
    /// Largest image in pixels, checked from its header before decoding.
    pub pixel_limit: u64,
    /// Longest a request may take before it gets 504.
    pub timeout: Duration,
    /// Images decoded and framed at once.
    pub workers: usize,
    pub backend: crate::device::Backend,
    pub detector: Option<PathBuf>,
    pub detect: DetectOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Model(#[from] crate::weights::WeightsError),
    #[error("{0}")]
    Faces(#[from] crate::faces::FaceError),
    #[error("{0}")]
    Device(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running server: its address, and how to stop it.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// Stops accepting, finishes the requests in flight, stops the model thread.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.wait()
    }

    /// Waits until the server stops (by `shutdown` from elsewhere, SIGTERM or Ctrl-C).
    pub fn wait(mut self) -> Result<(), ServeError> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServeError::Device("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

/// Loads the model, starts the model thread and the HTTP server on a thread of its own, and
/// returns once it listens. With `on_signals`, SIGTERM and Ctrl-C shut it down gracefully.
pub fn start(config: ServeConfig, on_signals: bool) -> Result<Server, ServeError> {
    let device = config
        .backend
        .device()
        .map_err(|e| ServeError::Device(format!("{e:#}")))?;
    let loaded = crate::model::saved::load(&config.model, &device)?;
    let (h, w) = loaded.meta.spec.input_hw;
    let cropper = FaceCropper {
        detector: FaceDetector::open(config.detector.as_deref(), config.detect.clone())?,
        template: AlignTemplate::for_size(h, w),
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let spec = crate::eval::predict::input_spec(&loaded.model);
    let (batcher, model_thread) = batcher::Batcher::start(
        loaded.model,
        device,
        config.max_batch,
        config.max_wait,
        config.queue,
        metrics.clone(),
    )?;
    let card = routes::model_card(&config.model, &loaded.meta);
    let state = routes::AppState::new(routes::Inner {
        batcher,
        metrics,
        cropper,
        spec: crate::preprocess::InputSpec {
            pixel_limit: config.pixel_limit,
            ..spec
        },
        classes: loaded.meta.spec.class_names.clone(),
        framing: loaded.meta.spec.framing,
        card,
        decoders: tokio::sync::Semaphore::new(config.workers.max(1)),
        timeout: config.timeout,
        ready: std::sync::atomic::AtomicBool::new(true),
        body_limit: config.body_limit,
    });
    let addr = format!("{}:{}", config.host, config.port);
    let listener = std::net::TcpListener::bind(&addr).map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let body_limit = config.body_limit;
    let thread = std::thread::Builder::new()
        .name("faceattr-http".into())
        .spawn(move || -> Result<(), ServeError> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("faceattr-io")
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let app = routes::router(state.clone(), body_limit);
                let stopping = state.clone();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        stop_signal(stop_rx, on_signals).await;
                        stopping.set_ready(false);
                    })
                    .await?;
                Ok::<(), ServeError>(())
            })?;
            // Every request is answered; the handlers' senders are gone with the router, so
            // the model thread ends after its last batch.
            drop(rt);
            let _ = model_thread.join();
            Ok(())
        })?;
    Ok(Server {
        addr: local,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// Resolves on `shutdown()`, or on SIGTERM / Ctrl-C when `on_signals`.
async fn stop_signal(stop: tokio::sync::oneshot::Receiver<()>, on_signals: bool) {
    if !on_signals {
        let _ = stop.await;
        return;
    }
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = ctrl_c => {}
        _ = term => {}
    }
}
