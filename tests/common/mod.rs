//! Shared helpers for the integration tests: where the reference fixtures are, and reading them.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::Device;
use faceattr::data::decode::DEFAULT_PIXEL_LIMIT;
use faceattr::preprocess::InputSpec;
use faceattr::preprocess::{Interpolation, Preprocessing};

/// `$FACEATTR_FIXTURES`, else `../shared/fixtures` beside the checkout.
pub fn fixtures() -> PathBuf {
    std::env::var_os("FACEATTR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"))
}

pub fn reference(framework: &str) -> serde_json::Value {
    let path = fixtures().join(framework).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference.json is JSON")
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub fn matrix(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .flat_map(floats)
        .collect()
}

/// The CPU, or with `FACEATTR_TEST_BACKEND=cuda` the GPU (the same tests then check cuDNN's
/// layers against the references: `scripts/gpu-check.sh`).
pub fn device() -> Device {
    match std::env::var("FACEATTR_TEST_BACKEND").as_deref() {
        Ok("cuda") => faceattr::device::Backend::Cuda
            .device()
            .unwrap_or_else(|e| panic!("FACEATTR_TEST_BACKEND=cuda: {e}")),
        Ok(other) if other != "flex" => panic!("FACEATTR_TEST_BACKEND={other}: use cuda or flex"),
        _ => Device::flex(),
    }
}

pub fn spec(preprocessing: Preprocessing) -> InputSpec {
    InputSpec {
        height: 218,
        width: 178,
        preprocessing,
        interpolation: Interpolation::Nearest,
        pixel_limit: DEFAULT_PIXEL_LIMIT,
        decoding: Default::default(),
    }
}

pub fn inputs(framework: &str) -> Vec<PathBuf> {
    (0..4)
        .map(|i| fixtures().join(framework).join(format!("in_{i}.png")))
        .collect()
}

/// The largest of `values`, NaN if any is NaN (`f32::max` would skip it, and a NaN output
/// would then pass every tolerance).
pub fn max_or_nan(values: impl IntoIterator<Item = f32>) -> f32 {
    values.into_iter().fold(0f32, |m, v| {
        if m.is_nan() || v.is_nan() {
            f32::NAN
        } else {
            m.max(v)
        }
    })
}

/// max |a - b| / max |b|: the error relative to the reference's scale; NaN (which fails any
/// `< tolerance`) if either side has a NaN.
pub fn rel_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = max_or_nan(b.iter().map(|v| v.abs())).max(f32::MIN_POSITIVE);
    max_abs_diff(a, b) / scale
}

/// max |a - b|; NaN if either side has a NaN.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    max_or_nan(a.iter().zip(b).map(|(x, y)| (x - y).abs()))
}

/// Training options for the tests: command-line defaults, random base of `widths`, seeded.
pub fn train_args(
    data: &std::path::Path,
    out: &std::path::Path,
    widths: &[usize],
) -> faceattr::train::config::TrainArgs {
    let mut a = faceattr::train::config::TrainArgs::new(&data.join("train"), "random", out)
        .expect("defaults parse");
    a.valid = Some(data.join("valid"));
    a.widths = Some(widths.to_vec());
    a.patience = 0;
    a.cache_memory = 64;
    a
}

/// `$FACEATTR_IMAGES`, else `../shared/images` beside the checkout: public-domain photos.
pub fn images() -> PathBuf {
    std::env::var_os("FACEATTR_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/images"))
}

/// A TIFF-in-EXIF block with one entry: Orientation = `value`.
pub fn exif_orientation(value: u16) -> Vec<u8> {
    let mut b = b"II*\0".to_vec();
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&0x0112u16.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&value.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// A small model (demo widths, one epoch) trained on generated images, once per test binary:
/// for tests of what is done with a model rather than of how well it learned.
pub fn tiny_model() -> PathBuf {
    static MODEL: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    MODEL
        .get_or_init(|| {
            let d = tempfile::tempdir().expect("tempdir");
            faceattr::data::synthetic::write_dataset(
                &d.path().join("data"),
                [16, 4, 0],
                178,
                218,
                0,
            )
            .expect("data");
            let mut args = train_args(
                &d.path().join("data"),
                &d.path().join("run"),
                &faceattr::cli::demo::DEMO_WIDTHS,
            );
            args.epochs = 1;
            args.head = 8;
            faceattr::train::trainer::train(args, false, true).expect("trains");
            let m = d.path().join("run/weights/best.safetensors");
            (d, m)
        })
        .1
        .clone()
}

/// A server on a free port of 127.0.0.1 for `model`, with small limits a test can reach.
pub fn serve_config(model: &std::path::Path) -> faceattr::serve::ServeConfig {
    faceattr::serve::ServeConfig {
        model: model.to_path_buf(),
        host: "127.0.0.1".into(),
        port: 0,
        max_batch: 32,
        max_wait: std::time::Duration::from_millis(20),
        queue: 64,
        body_limit: 4 << 20,
        pixel_limit: DEFAULT_PIXEL_LIMIT,
        timeout: std::time::Duration::from_secs(60),
        workers: 2,
        backend: faceattr::device::Backend::Flex,
        detector: None,
        detect: Default::default(),
    }
}

#[cfg(test)]
mod self_tests {
    #[test]
    fn a_nan_never_passes_a_tolerance() {
        assert!(super::max_abs_diff(&[1.0, f32::NAN], &[1.0, 2.0]).is_nan());
        assert!(super::rel_error(&[1.0, 2.0], &[f32::NAN, 2.0]).is_nan());
        // what the parity tests assert, `diff < tolerance`, is false for NaN
        assert_eq!(
            super::max_abs_diff(&[f32::NAN], &[0.0]).partial_cmp(&1e-5),
            None
        );
        assert_eq!(super::max_abs_diff(&[1.0, 3.0], &[1.5, 1.0]), 2.0);
    }
}
