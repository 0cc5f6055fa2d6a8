//! `faceattr serve` over real HTTP on 127.0.0.1: good images, several at once, faces and
//! Grad-CAM, every kind of bad request, a full queue, a timeout, concurrent clients batched
//! together, and a shutdown with requests in flight (in-process and by SIGTERM).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faceattr::serve::{ServeConfig, Server, start};

fn model() -> PathBuf {
    common::tiny_model()
}

fn config(model: &Path) -> ServeConfig {
    common::serve_config(model)
}

struct Reply {
    status: u16,
    retry_after: Option<String>,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{}: {e}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut r = r.expect("the server answers");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let retry_after = header("retry-after");
    let content_type = header("content-type").unwrap_or_default();
    Reply {
        status: r.status().as_u16(),
        retry_after,
        content_type,
        body: r
            .body_mut()
            .with_config()
            .limit(200 << 20)
            .read_to_string()
            .expect("body"),
    }
}

fn post_to(addr: SocketAddr, query: &str, content_type: &str, body: &[u8]) -> Reply {
    let url = format!("http://{addr}/v1/predict{query}");
    reply(
        agent()
            .post(&url)
            .header("Content-Type", content_type)
            .send(body),
    )
}

fn post(server: &Server, query: &str, content_type: &str, body: &[u8]) -> Reply {
    post_to(server.addr, query, content_type, body)
}

fn get_at(addr: SocketAddr, path: &str) -> Reply {
    reply(agent().get(&format!("http://{addr}{path}")).call())
}

fn get(server: &Server, path: &str) -> Reply {
    get_at(server.addr, path)
}

/// A multipart/form-data body with one file part per `(file name, bytes)`.
fn form(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "faceattr-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn astronaut() -> Vec<u8> {
    std::fs::read(common::images().join("astronaut.png")).expect("astronaut.png")
}

fn small_jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(89, 109, |x, y| {
        image::Rgb([
            (x as u8).wrapping_mul(3) ^ seed,
            (y as u8).wrapping_mul(2),
            128,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode");
    out
}

/// The value of a metric line `name value` in `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    metric_at(server.addr, name)
}

fn metric_at(addr: SocketAddr, name: &str) -> f64 {
    let text = get_at(addr, "/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[test]
fn answers_images_faces_explanations_and_the_card() {
    let server = start(config(&model()), false).expect("starts");
    assert_eq!(get(&server, "/healthz").status, 200);
    assert_eq!(get(&server, "/readyz").status, 200);

    // one raw image: the object `predict --json` prints
    let r = post(&server, "", "image/jpeg", &small_jpeg(1));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let p = |c: &str| v["probs"][c].as_f64().expect("probability");
    assert!(["cool", "warm"].contains(&v["label"].as_str().expect("label")));
    assert!((0.0..=1.0).contains(&p("cool")) && (0.0..=1.0).contains(&p("warm")));
    assert_eq!(v["path"], "upload");

    // a form with three files, one of them not an image: an array, in order
    let bad = b"this is text".to_vec();
    let (ct, body) = form(&[
        ("a.jpg", &small_jpeg(2)),
        ("notes.txt", &bad),
        ("c.jpg", &small_jpeg(3)),
    ]);
    let r = post(&server, "", &ct, &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let arr = r.json();
    let arr = arr.as_array().expect("array");
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["path"], "a.jpg");
    assert!(arr[0]["label"].is_string());
    assert_eq!(arr[1]["path"], "notes.txt");
    assert!(
        arr[1]["error"]
            .as_str()
            .expect("error")
            .contains("not an image")
    );
    assert!(arr[2]["probs"].is_object());

    // faces detected and aligned on request, with a Grad-CAM map per face
    let r = post(
        &server,
        "?faces=detect&explain=true",
        "image/png",
        &astronaut(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(512), Some(512))
    );
    let faces = v["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 1);
    let b = faces[0]["box"].as_array().expect("box");
    assert!((b[0].as_f64().expect("x") - 179.0).abs() < 6.0, "{b:?}");
    let png = faces[0]["gradcam"]
        .as_str()
        .and_then(|s| s.strip_prefix("data:image/png;base64,"))
        .expect("a PNG data URL");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png)
        .expect("base64");
    let heat = image::load_from_memory(&bytes).expect("a PNG");
    assert_eq!((heat.width(), heat.height()), (178, 218));

    // a photo without a face in faces mode: an empty list, not an error
    let flat = {
        let mut out = Vec::new();
        image::RgbImage::from_pixel(120, 90, image::Rgb([90, 120, 200]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("png");
        out
    };
    let r = post(&server, "?faces=detect", "image/png", &flat);
    assert_eq!(
        (r.status, r.json()["faces"].clone()),
        (200, serde_json::json!([]))
    );

    // the model card
    let card = get(&server, "/v1/model").json();
    assert_eq!(card["classes"], serde_json::json!(["cool", "warm"]));
    assert_eq!(
        card["input"],
        serde_json::json!({"height": 218, "width": 178})
    );
    assert_eq!(card["framing"], "whole");
    assert_eq!(card["preprocessing"], "caffe");
    assert!(
        card["card_markdown"]
            .as_str()
            .expect("markdown")
            .starts_with("# Model card")
    );

    // the page and the metrics
    let page = get(&server, "/");
    assert!(page.content_type.starts_with("text/html") && page.body.contains("<canvas"));
    let m = get(&server, "/metrics");
    assert!(m.content_type.starts_with("text/plain"));
    assert!(
        m.body
            .contains("faceattr_requests_total{route=\"/v1/predict\",status=\"200\"} 4"),
        "{}",
        m.body
    );
    assert!(metric(&server, "faceattr_faces_total") >= 1.0);
    server.shutdown().expect("stops");
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_stays_up() {
    let mut c = config(&model());
    c.body_limit = 256 << 10;
    c.pixel_limit = 200_000;
    let server = start(c, false).expect("starts");
    let status_and_error = |r: Reply| {
        (
            r.status,
            r.json()["error"].as_str().unwrap_or("").to_string(),
        )
    };

    let (s, e) = status_and_error(post(&server, "", "application/octet-stream", b""));
    assert_eq!(s, 400, "{e}");
    assert!(e.contains("empty"), "{e}");
    let (s, e) = status_and_error(post(&server, "", "image/jpeg", b"GIF89a but not really"));
    assert_eq!(s, 422, "{e}");
    let (s, e) = status_and_error(post(&server, "", "text/plain", b"hello, server"));
    assert_eq!((s, e.contains("not an image")), (400, true), "{e}");
    // a PNG cut short
    let jpeg = small_jpeg(4);
    let mut png = Vec::new();
    image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x * y) as u8, (x ^ y) as u8, 7])
    })
    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
    .expect("png");
    let (s, e) = status_and_error(post(&server, "", "image/png", &png[..png.len() / 2]));
    assert_eq!(s, 422, "{e}");
    assert!(e.contains("truncated") || e.contains("corrupt"), "{e}");
    // too large a body
    let (s, e) = status_and_error(post(&server, "", "image/png", &vec![7u8; 300 << 10]));
    assert_eq!(s, 413, "{e}");
    assert!(e.contains("0.25 MB"), "{e}");
    // over the pixel limit (a 1000 x 1000 PNG is small on disk)
    let mut big = Vec::new();
    image::GrayImage::new(1000, 1000)
        .write_to(&mut std::io::Cursor::new(&mut big), image::ImageFormat::Png)
        .expect("png");
    assert!(big.len() < 256 << 10);
    let (s, e) = status_and_error(post(&server, "", "image/png", &big));
    assert_eq!(s, 422, "{e}");
    assert!(e.contains("over the limit"), "{e}");
    // a broken form, a form without files, an unknown mode
    let (s, _) = status_and_error(post(
        &server,
        "",
        "multipart/form-data; boundary=x",
        b"--y\r\n",
    ));
    assert_eq!(s, 400);
    let (ct, body) = form(&[]);
    let (s, e) = status_and_error(post(&server, "", &ct, &body));
    assert_eq!((s, e.as_str()), (400, "the form has no image"));
    let (s, e) = status_and_error(post(&server, "?faces=sideways", "image/jpeg", &jpeg));
    assert_eq!(s, 400, "{e}");
    // wrong method and unknown path
    assert_eq!(get(&server, "/v1/predict").status, 405);
    assert_eq!(get(&server, "/nothing").status, 404);

    // after all that, a good image is still answered
    assert_eq!(post(&server, "", "image/jpeg", &jpeg).status, 200);
    server.shutdown().expect("stops");
}

#[test]
fn concurrent_clients_are_batched_and_all_answered() {
    let server = start(config(&model()), false).expect("starts");
    let images: Vec<Vec<u8>> = (0..8).map(small_jpeg).collect();
    let clients = 24;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let (server, img) = (&server, &images[i % images.len()]);
                s.spawn(move || post(server, "", "image/jpeg", img))
            })
            .collect();
        for h in handles {
            let r = h.join().expect("client thread");
            assert_eq!(r.status, 200, "{}", r.body);
        }
    });
    let batches = metric(&server, "faceattr_batch_images_count");
    let images = metric(&server, "faceattr_batch_images_sum");
    assert_eq!(images, clients as f64);
    assert!(
        batches < images,
        "{batches} batches for {images} images: nothing was batched"
    );
    server.shutdown().expect("stops");
}

/// A request that keeps the model busy: many images, each explained.
fn heavy_form() -> (String, Vec<u8>) {
    let imgs: Vec<Vec<u8>> = (0..48).map(|i| small_jpeg(i as u8)).collect();
    let parts: Vec<(String, &[u8])> = imgs
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("{i}.jpg"), b.as_slice()))
        .collect();
    let parts: Vec<(&str, &[u8])> = parts.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    form(&parts)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "waited too long for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_a_slow_answer_504() {
    let mut c = config(&model());
    c.queue = 1;
    c.max_batch = 1;
    c.max_wait = Duration::from_millis(0);
    let server = start(c, false).expect("starts");
    let (ct, heavy) = heavy_form();
    std::thread::scope(|s| {
        let busy = s.spawn(|| post(&server, "?explain=true", &ct, &heavy));
        // the model is busy with the heavy request once its batch is counted
        wait_for("the heavy batch", || {
            metric(&server, "faceattr_batch_images_count") >= 1.0
        });
        let queued = s.spawn(|| post(&server, "", "image/jpeg", &small_jpeg(9)));
        wait_for("a queued request", || {
            metric(&server, "faceattr_queue_length") >= 1.0
        });
        let refused = post(&server, "", "image/jpeg", &small_jpeg(10));
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert_eq!(refused.retry_after.as_deref(), Some("1"));
        assert!(
            refused.json()["error"]
                .as_str()
                .expect("error")
                .contains("queue is full")
        );
        assert_eq!(busy.join().expect("thread").status, 200);
        assert_eq!(queued.join().expect("thread").status, 200);
    });
    server.shutdown().expect("stops");

    let mut c = config(&model());
    c.timeout = Duration::from_millis(300);
    let server = start(c, false).expect("starts");
    let r = post(&server, "?explain=true", &ct, &heavy);
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .expect("error")
            .contains("no answer within 0.3 s")
    );
    server.shutdown().expect("stops");
}

#[test]
fn shutdown_finishes_the_requests_in_flight() {
    let server = start(config(&model()), false).expect("starts");
    let addr = server.addr;
    let (ct, heavy) = heavy_form();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (ct, heavy) = (ct.clone(), heavy.clone());
            std::thread::spawn(move || post_to(addr, "?explain=true", &ct, &heavy))
        })
        .collect();
    // every request has been read and decoded before the server is told to stop
    wait_for("3 requests decoded", || {
        metric_at(addr, "faceattr_images_total") >= 3.0 * 48.0
    });
    server.shutdown().expect("stops");
    for c in clients {
        let r = c.join().expect("client thread");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json().as_array().map(Vec::len), Some(48));
    }
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after shutdown"
    );
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faceattr"))
        .args(["serve", "--port", "0", "--model"])
        .arg(model())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a first line");
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let (ct, heavy) = heavy_form();
    let client = std::thread::spawn(move || post_to(addr, "?explain=true", &ct, &heavy));
    wait_for("the request decoded", || {
        metric_at(addr, "faceattr_images_total") >= 48.0
    });
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let r = client.join().expect("client thread");
    assert_eq!(r.status, 200, "{}", r.body);
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("faceattr serve: stopped"));
}

/// Encodes `img` in `format`.
fn encoded(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode");
    out
}

#[test]
fn hundreds_of_damaged_images_never_take_it_down() {
    use rand::{Rng, SeedableRng};
    let server = start(config(&model()), false).expect("starts");
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, 99])
    });
    let originals: Vec<Vec<u8>> = [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
        image::ImageFormat::WebP,
    ]
    .iter()
    .map(|f| encoded(&img, *f))
    .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..240 {
        let mut body = originals[i % originals.len()].clone();
        match i % 4 {
            // cut short anywhere
            0 => body.truncate(rng.random_range(0..body.len())),
            // a few bytes flipped, headers included
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let k = rng.random_range(0..body.len());
                    body[k] ^= rng.random_range(1..=255u8);
                }
            }
            // a length or dimension field made huge
            2 => {
                let k = rng.random_range(0..body.len().min(64));
                body[k] = 0xff;
                body.insert(k, 0xff);
            }
            // random bytes behind a real signature
            _ => {
                body.truncate(12);
                body.extend((0..rng.random_range(0..4000)).map(|_| rng.random::<u8>()));
            }
        }
        let r = post(&server, "", "application/octet-stream", &body);
        assert!(
            [200, 400, 413, 422].contains(&r.status),
            "case {i}: {} {}",
            r.status,
            r.body
        );
        *seen.entry(r.status).or_insert(0) += 1;
    }
    // still up, still right
    assert_eq!(get(&server, "/healthz").status, 200);
    assert_eq!(post(&server, "", "image/jpeg", &small_jpeg(5)).status, 200);
    assert!(seen.len() >= 2, "{seen:?}");
    eprintln!("damaged images answered: {seen:?}");
    server.shutdown().expect("stops");
}
