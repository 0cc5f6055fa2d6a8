//! What `GET /metrics` reports, in Prometheus' text format: requests by status, request
//! latency and batch-size histograms, images and faces seen, and the queue's length.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A cumulative histogram (Prometheus semantics: each bucket counts values <= its bound).
struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum: Mutex<f64>,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: Mutex::new(0.0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        *self.sum.lock().unwrap_or_else(|p| p.into_inner()) += v;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = *self.sum.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Histogram,
    batches: Histogram,
    images: AtomicU64,
    faces: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            batches: Histogram::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            images: AtomicU64::new(0),
            faces: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route.to_string(), status))
            .or_insert(0) += 1;
        if route == "/v1/predict" {
            self.latency.observe(seconds);
        }
    }

    pub fn batch(&self, images: usize) {
        self.batches.observe(images as f64);
    }

    pub fn seen(&self, images: usize, faces: usize) {
        self.images.fetch_add(images as u64, Ordering::Relaxed);
        self.faces.fetch_add(faces as u64, Ordering::Relaxed);
    }

    pub fn render(&self, queued: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP faceattr_requests_total HTTP requests answered, by route and status.\n# TYPE faceattr_requests_total counter\n");
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "faceattr_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        self.latency.render(
            &mut out,
            "faceattr_predict_seconds",
            "Time to answer POST /v1/predict, decoding included.",
        );
        self.batches.render(
            &mut out,
            "faceattr_batch_images",
            "Images per forward pass of the model.",
        );
        let _ = writeln!(
            out,
            "# HELP faceattr_images_total Images decoded.\n# TYPE faceattr_images_total counter\nfaceattr_images_total {}",
            self.images.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP faceattr_faces_total Faces found.\n# TYPE faceattr_faces_total counter\nfaceattr_faces_total {}",
            self.faces.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP faceattr_queue_length Requests waiting for the model.\n# TYPE faceattr_queue_length gauge\nfaceattr_queue_length {queued}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_text_is_prometheus() {
        let m = Metrics::default();
        m.request("/v1/predict", 200, 0.02);
        m.request("/v1/predict", 200, 3.0);
        m.request("/v1/predict", 413, 0.001);
        m.batch(5);
        let text = m.render(2);
        assert!(text.contains("faceattr_requests_total{route=\"/v1/predict\",status=\"200\"} 2"));
        assert!(text.contains("faceattr_requests_total{route=\"/v1/predict\",status=\"413\"} 1"));
        assert!(text.contains("faceattr_predict_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("faceattr_predict_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("faceattr_predict_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("faceattr_batch_images_bucket{le=\"4\"} 0"));
        assert!(text.contains("faceattr_batch_images_bucket{le=\"8\"} 1"));
        assert!(text.contains("faceattr_queue_length 2"));
    }
}
