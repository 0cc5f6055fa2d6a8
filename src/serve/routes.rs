//! The endpoints: `POST /v1/predict` (a raw image body, or multipart with several), the model
//! card at `GET /v1/model`, `GET /healthz`, `GET /readyz`, `GET /metrics`, and the web page at
//! `GET /`. Every error is JSON `{"error": reason}` with a status that says whose fault it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use image::RgbImage;
use serde::Deserialize;

use super::batcher::{Batcher, Job, JobOutput, Submit};
use super::metrics::Metrics;
use crate::data::decode::{DecodeError, decode_bytes_as};
use crate::eval::predict::FacesMode;
use crate::faces::{Face, FaceCropper};
use crate::preprocess::Framing;
use crate::preprocess::InputSpec;

const PAGE: &str = include_str!("page.html");

pub struct Inner {
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub cropper: FaceCropper,
    pub spec: InputSpec,
    pub classes: Vec<String>,
    pub framing: Framing,
    pub card: serde_json::Value,
    /// Bounds the images decoded and framed at once (each may be a 50-megapixel photo).
    pub decoders: tokio::sync::Semaphore,
    pub timeout: Duration,
    pub ready: AtomicBool,
    pub body_limit: usize,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::SeqCst);
    }
}

pub fn router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/model", get(model))
        .route("/v1/predict", post(predict))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// An error answer: `{"error": reason}`.
fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": reason.into()})),
    )
        .into_response()
}

/// Counts every answer by route and status, and times predictions.
async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let t = Instant::now();
    let resp = next.run(req).await;
    s.0.metrics
        .request(&route, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.0.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut r = s.0.metrics.render(s.0.batcher.queued()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

async fn model(State(s): State<AppState>) -> axum::Json<serde_json::Value> {
    axum::Json(s.0.card.clone())
}

/// The model card as JSON: what `faceattr card` prints, with the figures of
/// `eval/report.json` beside the model when it has been evaluated.
pub fn model_card(
    path: &std::path::Path,
    meta: &crate::model::saved::ModelMeta,
) -> serde_json::Value {
    let report = path
        .parent()
        .map(|d| d.join("eval/report.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let metrics = report.as_ref().map(|r| {
        serde_json::json!({
            "accuracy": r["accuracy"], "n": r["n"], "roc_auc": r["roc_auc"], "ece": r["ece"],
            "loss": r["loss"], "per_class": r["per_class"], "framing": r["framing"],
        })
    });
    let s = &meta.spec;
    serde_json::json!({
        "classes": s.class_names,
        "input": {"height": s.input_hw.0, "width": s.input_hw.1},
        "preprocessing": s.preprocessing,
        "interpolation": s.interpolation,
        "framing": s.framing,
        "architecture": meta.architecture,
        "widths": meta.widths,
        "hidden": meta.hidden,
        "trained_layers": meta.trained_layers,
        "data": {
            "base_weights": meta.base_weights,
            "train_images": meta.train_images,
            "fingerprint": meta.data_fingerprint,
        },
        "metrics": metrics,
        "faceattr_version": meta.faceattr_version,
        "card_markdown": crate::eval::card::render(meta, None, None),
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct PredictQuery {
    /// auto | detect | whole
    faces: Option<String>,
    explain: Option<bool>,
}

/// One image of a request, framed for the model.
enum Framed {
    Whole(RgbImage),
    Faces {
        width: u32,
        height: u32,
        faces: Vec<Face>,
        crops: Vec<RgbImage>,
    },
}

impl Framed {
    fn images(&self) -> Vec<RgbImage> {
        match self {
            Framed::Whole(img) => vec![img.clone()],
            Framed::Faces { crops, .. } => crops.clone(),
        }
    }
}

/// Why one image could not be used, and the status that says so.
struct Refused {
    status: StatusCode,
    reason: String,
}

fn refused(e: &DecodeError) -> Refused {
    let status = match e {
        DecodeError::Empty { .. } | DecodeError::NotAnImage { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Refused {
        status,
        reason: e.reason(),
    }
}

async fn predict(
    State(s): State<AppState>,
    Query(q): Query<PredictQuery>,
    req: Request,
) -> Response {
    let mode = q.faces.as_deref().unwrap_or("auto");
    let Some(mode) = FacesMode::parse(mode) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("faces={mode}: use auto, detect or whole"),
        );
    };
    let detect = mode.detects(s.0.framing);
    let explain = q.explain.unwrap_or(false);
    let timeout = s.0.timeout;
    match tokio::time::timeout(timeout, answer(s, req, detect, explain)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("no answer within {} s", timeout.as_secs_f64()),
        ),
    }
}

/// The images of a request: the raw body, or every file part of a multipart form.
async fn bodies(
    req: Request,
    is_multipart: bool,
    limit: usize,
) -> Result<Vec<(String, Bytes)>, Response> {
    let refuse = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let mb = limit as f64 / (1 << 20) as f64;
            error(status, format!("the body is over the limit of {mb} MB"))
        } else {
            error(status, text)
        }
    };
    if !is_multipart {
        let body = Bytes::from_request(req, &())
            .await
            .map_err(|e| refuse(e.status(), e.body_text()))?;
        return Ok(vec![("upload".into(), body)]);
    }
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| refuse(e.status(), e.body_text()))?;
    let mut out = Vec::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field
                    .file_name()
                    .or(field.name())
                    .unwrap_or("upload")
                    .to_string();
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| refuse(e.status(), e.body_text()))?;
                out.push((name, data));
            }
            Ok(None) => break,
            Err(e) => return Err(refuse(e.status(), e.body_text())),
        }
    }
    if out.is_empty() {
        return Err(error(StatusCode::BAD_REQUEST, "the form has no image"));
    }
    Ok(out)
}

async fn answer(s: AppState, req: Request, detect: bool, explain: bool) -> Response {
    // Until this request's job is queued (or refused), a batch may wait for it.
    let preparing = s.0.batcher.preparing();
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let bodies = match bodies(req, multipart, s.0.body_limit).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // Decode and frame every image on the worker threads, a bounded number at once.
    let mut tasks = Vec::new();
    for (name, bytes) in bodies {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = s.0.decoders.acquire().await;
            let inner = s.0.clone();
            let label = name.clone();
            // A decoder that panics on a crafted file fails this image, not the server.
            tokio::task::spawn_blocking(move || frame(&inner, &name, &bytes, detect))
                .await
                .unwrap_or_else(|_| {
                    let reason = "the decoder failed on this file".to_string();
                    let status = StatusCode::UNPROCESSABLE_ENTITY;
                    (label, Err(Refused { status, reason }))
                })
        }));
    }
    let mut framed: Vec<(String, Result<Framed, Refused>)> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(f) => framed.push(f),
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "a worker failed"),
        }
    }
    let images: Vec<RgbImage> = framed
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(Framed::images)
        .collect();
    let faces: usize = framed
        .iter()
        .filter_map(|(_, r)| match r {
            Ok(Framed::Faces { faces, .. }) => Some(faces.len()),
            _ => None,
        })
        .sum();
    s.0.metrics.seen(framed.len(), faces);
    let output = if images.is_empty() {
        JobOutput::default()
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let submitted = s.0.batcher.submit(Job {
            images,
            explain,
            reply: tx,
        });
        drop(preparing);
        match submitted {
            Submit::Queued => {}
            Submit::Full => {
                let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "busy: the queue is full");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
            Submit::Closed => {
                return error(StatusCode::SERVICE_UNAVAILABLE, "the model has stopped");
            }
        }
        match rx.await {
            Ok(Ok(out)) => out,
            Ok(Err(reason)) => return error(StatusCode::INTERNAL_SERVER_ERROR, reason),
            Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the model has stopped"),
        }
    };
    respond(&s.0.classes, framed, output, multipart)
}

/// Decodes one image (its size checked from the header first) and frames it.
fn frame(s: &Inner, name: &str, bytes: &[u8], detect: bool) -> (String, Result<Framed, Refused>) {
    let decoded = decode_bytes_as(
        std::path::Path::new(name),
        bytes,
        s.spec.pixel_limit,
        s.spec.decoding,
    );
    let photo = match decoded {
        Ok(p) => p,
        Err(e) => return (name.to_string(), Err(refused(&e))),
    };
    if !detect {
        return (
            name.to_string(),
            Ok(Framed::Whole(s.spec.frame_whole(photo))),
        );
    }
    let r = s.cropper.crops(&photo).map(|crops| {
        let (faces, crops) = crops.into_iter().map(|c| (c.face, c.image)).unzip();
        Framed::Faces {
            width: photo.width(),
            height: photo.height(),
            faces,
            crops,
        }
    });
    let r = r.map_err(|e| Refused {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        reason: e.to_string(),
    });
    (name.to_string(), r)
}

/// The JSON answer: one object per image, as `faceattr predict --json` prints them (an array
/// for a multipart form, the object itself for a raw body). If no image could be used the
/// status is the first image's.
fn respond(
    classes: &[String],
    framed: Vec<(String, Result<Framed, Refused>)>,
    out: JobOutput,
    multipart: bool,
) -> Response {
    if let Some(Err(first)) = framed.iter().all(|(_, r)| r.is_err()).then(|| &framed[0].1) {
        return error(first.status, first.reason.clone());
    }
    let mut probs = out.probs.into_iter();
    let mut maps = out.gradcam.into_iter();
    let mut next = || -> (Vec<f32>, Option<String>) {
        let p = probs.next().unwrap_or_default();
        let m = maps.next().map(|png| {
            format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(png)
            )
        });
        (p, m)
    };
    let objects: Vec<serde_json::Value> = framed
        .into_iter()
        .map(|(name, r)| match r {
            Err(e) => serde_json::json!({"path": name, "error": e.reason}),
            Ok(Framed::Whole(_)) => {
                let (p, map) = next();
                let mut v = crate::eval::predict::whole_json(&name, classes, &p);
                if let Some(m) = map {
                    v["gradcam"] = m.into();
                }
                v
            }
            Ok(Framed::Faces {
                width,
                height,
                faces,
                ..
            }) => {
                let faces: Vec<serde_json::Value> = faces
                    .iter()
                    .map(|f| {
                        let (p, map) = next();
                        let mut v = crate::eval::predict::face_json(classes, f, &p);
                        if let Some(m) = map {
                            v["gradcam"] = m.into();
                        }
                        v
                    })
                    .collect();
                serde_json::json!({"path": name, "width": width, "height": height, "faces": faces})
            }
        })
        .collect();
    let body = if multipart {
        serde_json::Value::Array(objects)
    } else {
        objects.into_iter().next().unwrap_or_default()
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}
