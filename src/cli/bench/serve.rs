//! `faceattr bench serve`: a local server under N concurrent clients for a fixed time
//! (requests/s, latency percentiles, errors), next to one client at a time and to `predict`
//! on the same images one by one, in-process and as one process per image.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::eval::predict::FacesMode;
use crate::faces::DetectOptions;
use crate::serve::{ServeConfig, start};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  faceattr demo && faceattr bench serve
  faceattr bench serve --model runs/gender/weights/best.safetensors --images photos/ --faces detect")]
pub struct ServeBenchArgs {
    /// Default: the demo's model (runs/demo/run/weights/best.safetensors).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Photos sent in turn; default: 16 generated 178x218 JPEGs.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The `faces` query sent with each request.
    #[arg(long, value_enum, default_value_t = FacesMode::Auto)]
    pub faces: FacesMode,
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    #[arg(long)]
    pub json: bool,
}

/// What one load run measured.
#[derive(Debug, serde::Serialize)]
struct Load {
    clients: usize,
    requests: usize,
    errors: usize,
    requests_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `clients` threads post the images in turn for `secs`.
fn load(
    addr: std::net::SocketAddr,
    query: &str,
    images: &[Vec<u8>],
    clients: usize,
    secs: u64,
) -> Load {
    let url = format!("http://{addr}/v1/predict?{query}");
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let results: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let url = &url;
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(120)))
                        .build()
                        .into();
                    let (mut lat, mut errors, mut i) = (Vec::new(), 0, c);
                    while Instant::now() < end {
                        let t = Instant::now();
                        let ok = agent
                            .post(url)
                            .header("Content-Type", "application/octet-stream")
                            .send(&images[i % images.len()][..])
                            .map(|mut r| {
                                let _ = r.body_mut().read_to_vec();
                                r.status().as_u16() == 200
                            })
                            .unwrap_or(false);
                        if ok {
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        } else {
                            errors += 1;
                        }
                        i += 1;
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    let errors = results.iter().map(|r| r.1).sum();
    lat.sort_by(f64::total_cmp);
    Load {
        clients,
        requests: lat.len(),
        errors,
        requests_per_s: lat.len() as f64 / wall,
        p50_ms: percentile(&lat, 0.5),
        p95_ms: percentile(&lat, 0.95),
        p99_ms: percentile(&lat, 0.99),
    }
}

fn images(a: &ServeBenchArgs) -> anyhow::Result<(Vec<PathBuf>, Option<tempfile::TempDir>)> {
    match &a.images {
        Some(p) if p.is_dir() => Ok((crate::data::folder::files_under(p)?, None)),
        Some(p) => Ok((vec![p.clone()], None)),
        None => {
            let tmp = tempfile::tempdir()?;
            crate::data::synthetic::write_dataset(tmp.path(), [8, 0, 0], 178, 218, 7)?;
            let files = crate::data::folder::files_under(&tmp.path().join("train"))?;
            Ok((files, Some(tmp)))
        }
    }
}

pub fn run(a: ServeBenchArgs) -> anyhow::Result<()> {
    let model = a
        .model
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/demo/run/weights/best.safetensors"));
    if !model.is_file() {
        anyhow::bail!(
            "{}: no such model (run `faceattr demo` first, or give --model)",
            model.display()
        );
    }
    let (paths, _tmp) = images(&a)?;
    let bytes: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<_, _>>()?;
    if bytes.is_empty() {
        anyhow::bail!("no images to send");
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = start(
        ServeConfig {
            model: model.clone(),
            host: "127.0.0.1".into(),
            port: 0,
            max_batch: a.max_batch,
            max_wait: Duration::from_millis(a.max_wait_ms),
            queue: a.clients.max(1) * 2,
            body_limit: 20 << 20,
            pixel_limit: crate::data::decode::DEFAULT_PIXEL_LIMIT,
            timeout: Duration::from_secs(120),
            workers: threads,
            backend: crate::device::Backend::Flex,
            detector: None,
            detect: DetectOptions::default(),
        },
        false,
    )?;
    let query = format!("faces={}", a.faces.name());
    // warm-up: plans, kernels, connections
    let _ = load(server.addr, &query, &bytes, 2, 1);
    let one = load(server.addr, &query, &bytes, 1, a.seconds);
    let many = load(server.addr, &query, &bytes, a.clients, a.seconds);
    server.shutdown()?;

    // `predict` on the same images, one at a time: in-process (model loaded once) ...
    let device = crate::device::Backend::Flex.device()?;
    let loaded = crate::model::saved::load(&model, &device)?;
    let detect = a.faces.detects(loaded.meta.spec.framing);
    let cropper = crate::faces::FaceCropper {
        detector: crate::faces::FaceDetector::embedded(DetectOptions::default())?,
        template: crate::faces::AlignTemplate::for_size(
            loaded.meta.spec.input_hw.0,
            loaded.meta.spec.input_hw.1,
        ),
    };
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < Duration::from_secs(a.seconds) {
        let p = std::slice::from_ref(&paths[n % paths.len()]);
        if detect {
            crate::eval::predict::predict_faces(&loaded.model, &cropper, p, 1, &device, |_| {});
        } else {
            crate::eval::predict::predict(&loaded.model, p, 1, &device, |_| {});
        }
        n += 1;
    }
    let in_process = n as f64 / t.elapsed().as_secs_f64();
    // ... and as a new `faceattr predict` process per image (what a script calling the CLI pays)
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let mut m = 0;
    while t.elapsed() < Duration::from_secs(a.seconds) || m == 0 {
        let status = std::process::Command::new(&exe)
            .args(["predict", "--faces", a.faces.name(), "--model"])
            .arg(&model)
            .arg(&paths[m % paths.len()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            anyhow::bail!(
                "faceattr predict failed on {}",
                paths[m % paths.len()].display()
            );
        }
        m += 1;
    }
    let per_process = m as f64 / t.elapsed().as_secs_f64();

    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": model, "images": paths.len(), "seconds": a.seconds, "faces": a.faces.name(),
                "threads": threads, "sequential": one, "concurrent": many,
                "predict_in_process_img_s": in_process, "predict_process_per_image_img_s": per_process,
                "speedup_concurrent_over_sequential": many.requests_per_s / one.requests_per_s,
            })
        );
        return Ok(());
    }
    println!(
        "{} ({} images, faces={}), {} s per row, {threads} cores, batches up to {} images / {} ms",
        model.display(),
        paths.len(),
        a.faces.name(),
        a.seconds,
        a.max_batch,
        a.max_wait_ms
    );
    println!(
        "{:<44} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "", "images/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    for (name, l) in [
        ("serve, 1 client (sequential requests)".to_string(), &one),
        (format!("serve, {} concurrent clients", many.clients), &many),
    ] {
        println!(
            "{name:<44} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>7}",
            l.requests_per_s, l.p50_ms, l.p95_ms, l.p99_ms, l.errors
        );
    }
    println!(
        "{:<44} {:>9.1}",
        "predict one by one, in-process", in_process
    );
    println!(
        "{:<44} {:>9.1}",
        "predict one by one, a process per image", per_process
    );
    println!(
        "concurrent / sequential: {:.2}x",
        many.requests_per_s / one.requests_per_s
    );
    Ok(())
}
