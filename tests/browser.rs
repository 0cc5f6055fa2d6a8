//! The web page in a real browser: headless Chromium, driven through chromedriver's WebDriver
//! protocol (plain HTTP + JSON), opens `faceattr serve`'s page, uploads a photo, and the test
//! checks the drawn result in the DOM, in the canvas and on a screenshot. Chromium and
//! chromedriver come from Debian's `chromium` and `chromium-driver`, which `scripts/setup.sh`
//! installs; where they are missing the test says SKIPPED and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.is_file())
}

struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Driver {
    fn start(chromedriver: &Path, chromium: &Path, profile: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut d = Driver {
            child,
            base,
            session: String::new(),
            agent,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        let v = d.call("POST", "/session", Some(caps));
        d.session = v["sessionId"].as_str().expect("a session").to_string();
        d
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let r = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(json!({})).to_string().as_bytes()),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        };
        let mut r = r.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .expect("body");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        if r.status().as_u16() != 200 {
            panic!("{method} {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().expect("an element").to_string()
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    fn wait(&self, js_condition: &str, what: &str) {
        let t = Instant::now();
        while self.script(&format!("return !!({js_condition});")) != json!(true) {
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "waited too long for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_shows_each_face_boxed_and_labelled() {
    let chromedriver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
    let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
        eprintln!(
            "SKIPPED the_page_shows_each_face_boxed_and_labelled: Chromium or chromedriver is not installed (scripts/setup.sh installs Debian's chromium and chromium-driver)"
        );
        return;
    };
    let config = common::serve_config(&common::tiny_model());
    let server = faceattr::serve::start(config, false).expect("server starts");
    let profile = tempfile::tempdir().expect("tempdir");
    let d = Driver::start(&chromedriver, &chromium, profile.path());
    d.call(
        "POST",
        "/url",
        Some(json!({"url": format!("http://{}/", server.addr)})),
    );
    d.wait(
        "document.getElementById('model').textContent.includes('cool')",
        "the model card",
    );

    // faces mode, then the photo through the file input
    let option = d.element("#mode option[value=detect]");
    d.call("POST", &format!("/element/{option}/click"), None);
    let input = d.element("#file");
    let photo = std::fs::canonicalize(common::images().join("astronaut.png")).expect("the photo");
    d.call(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": photo.display().to_string()})),
    );
    d.wait("document.body.dataset.done === '1'", "the answer");

    // the DOM: one face, its label and box
    let faces = d.script(
        "return [...document.querySelectorAll('#results li.face')].map(li => [li.dataset.label, li.dataset.box, li.textContent]);",
    );
    let faces = faces.as_array().expect("a list");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let label = faces[0][0].as_str().expect("label");
    assert!(["cool", "warm"].contains(&label), "{label}");
    let b: Vec<f64> = faces[0][1]
        .as_str()
        .expect("box")
        .split(',')
        .map(|v| v.parse().expect("number"))
        .collect();
    assert!(
        (b[0] - 179.0).abs() < 6.0 && (b[1] - 63.0).abs() < 6.0,
        "{b:?}"
    );
    assert!(faces[0][2].as_str().expect("text").contains(" %"));
    let status = d.script("return document.getElementById('status').textContent;");
    assert!(
        status.as_str().expect("status").starts_with("1 face"),
        "{status}"
    );

    // the canvas: the photo at its size, the box's left edge in the label's colour
    let expected = if label == "cool" {
        [230, 25, 75]
    } else {
        [0, 130, 200]
    };
    let px = d.script(&format!(
        "const c = document.getElementById('canvas'); return [c.width, c.height, ...c.getContext('2d').getImageData({}, {}, 1, 1).data];",
        b[0].round() as i64,
        (b[1] + b[3] / 2.0).round() as i64
    ));
    let px: Vec<i64> = px
        .as_array()
        .expect("pixel")
        .iter()
        .map(|v| v.as_i64().expect("int"))
        .collect();
    assert_eq!(&px[..2], &[512, 512]);
    for c in 0..3 {
        assert!(
            (px[2 + c] - expected[c]).abs() < 40,
            "canvas pixel {px:?} vs {expected:?}"
        );
    }

    // the screenshot: the box colour is drawn on screen
    let shot = d.call("GET", "/screenshot", None);
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().expect("base64"))
        .expect("a PNG");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    std::fs::write(&out, &png).expect("screenshot written");
    let img = image::load_from_memory(&png).expect("decodes").to_rgb8();
    let boxed = img
        .pixels()
        .filter(|p| (0..3).all(|c| (p.0[c] as i64 - expected[c]).abs() < 30))
        .count();
    assert!(
        boxed > 200,
        "only {boxed} pixels of the box colour on the screenshot {}",
        out.display()
    );

    // Grad-CAM on: the face is explained with a heat map image
    let toggle = d.element("#explain");
    d.call("POST", &format!("/element/{toggle}/click"), None);
    d.wait(
        "document.querySelector('#results li.face img[src^=\"data:image/png\"]')",
        "the heat map",
    );
    server.shutdown().expect("stops");
}
