//! `faceattr bench faces`: YuNet's time per 640-pixel photo in faceattr beside onnxruntime's
//! on the same input tensor in the same run (when Python with onnxruntime is at hand), the
//! whole multi-scale `detect` per photo, and `faces align` photos per second over a folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::median_secs;
use crate::faces::align_set::{AlignSetOptions, CropFormat, align_set};
use crate::faces::detect::input_tensor;
use crate::faces::yunet::{EMBEDDED, Yunet};
use crate::faces::{AlignTemplate, DetectOptions, FaceCropper, FaceDetector, Multiple};

const PEER_SCRIPT: &str = include_str!("../../../scripts/yunet_peer.py");

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  faceattr bench faces --image ../shared/images/astronaut.png
  faceattr bench faces --image group.jpg --photos 48 --python .venv-peers/bin/python --json

Without --image, a generated 1280x960 picture is used (no face: detection cost barely depends
on what is in the picture, but `faces align` then writes no crop).")]
pub struct FacesBenchArgs {
    /// The photo to detect in.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Long side for the single-scale network timing (the photo is scaled to it).
    #[arg(long, default_value_t = 640)]
    pub size: u32,
    /// Timed runs; the median is reported.
    #[arg(long, default_value_t = 15)]
    pub repeats: usize,
    /// Copies of the photo (as JPEG) in the folder `faces align` is timed on.
    #[arg(long, default_value_t = 24)]
    pub photos: usize,
    /// Python with onnxruntime for the peer column; default: .venv-peers/bin/python if it
    /// exists, else python3.
    #[arg(long)]
    pub python: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

fn photo(a: &FacesBenchArgs) -> anyhow::Result<image::RgbImage> {
    match &a.image {
        Some(p) => Ok(crate::data::decode::decode_rgb(
            p,
            crate::data::decode::DEFAULT_PIXEL_LIMIT,
        )?),
        None => Ok(image::RgbImage::from_fn(1280, 960, |x, y| {
            image::Rgb([(x / 5) as u8, (y / 4) as u8, ((x + y) / 9) as u8])
        })),
    }
}

/// The photo scaled so that its long side is `size`.
fn scaled(img: &image::RgbImage, size: u32) -> image::RgbImage {
    let k = size as f64 / img.width().max(img.height()) as f64;
    let (w, h) = (
        ((img.width() as f64 * k).round() as u32).max(1),
        ((img.height() as f64 * k).round() as u32).max(1),
    );
    crate::preprocess::resample(img, w, h)
}

/// onnxruntime's median ms on the same tensor with `threads` threads, or why there is none.
fn peer_ms(
    python: &Path,
    input: &[f32],
    h: usize,
    w: usize,
    repeats: usize,
    threads: usize,
) -> Result<(f64, String), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (model, tensor, script) = (
        dir.path().join("yunet.onnx"),
        dir.path().join("input.f32"),
        dir.path().join("yunet_peer.py"),
    );
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&model, EMBEDDED)
        .and_then(|_| std::fs::write(&tensor, bytes))
        .and_then(|_| std::fs::write(&script, PEER_SCRIPT))
        .map_err(|e| e.to_string())?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(&model)
        .arg(&tensor)
        .args([h, w, repeats, threads].map(|v| v.to_string()))
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("failed");
        return Err(format!("{}: {last}", python.display()));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut ms: Vec<f64> = v["ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    if ms.is_empty() {
        return Err("no timings".into());
    }
    ms.sort_by(f64::total_cmp);
    let version = v["onnxruntime"].as_str().unwrap_or("?").to_string();
    Ok((ms[ms.len() / 2], version))
}

pub fn run(a: FacesBenchArgs) -> anyhow::Result<()> {
    let img = photo(&a)?;
    let threads = rayon::current_num_threads();
    let net = Yunet::embedded()?;
    let small = scaled(&img, a.size);
    let (input, h, w) = input_tensor(&small);
    let net_ms = 1e3
        * median_secs(a.repeats, || {
            let _ = net.run(&input, h, w);
        });
    let detector = FaceDetector::new(Yunet::embedded()?, DetectOptions::default())?;
    let faces = detector.detect(&img)?.len();
    let detect_ms = 1e3
        * median_secs(a.repeats, || {
            let _ = detector.detect(&img);
        });
    // A phone photo's size: the cost of reducing 12 megapixels before the network runs.
    let phone = crate::preprocess::resample(&img, 4032, 3024);
    let detect_phone_ms = 1e3
        * median_secs(a.repeats.min(5), || {
            let _ = detector.detect(&phone);
        });
    let single = FaceDetector::new(
        Yunet::embedded()?,
        DetectOptions {
            sizes: vec![a.size],
            ..DetectOptions::default()
        },
    )?;
    let detect_single_ms = 1e3
        * median_secs(a.repeats, || {
            let _ = single.detect(&img);
        });

    let python = a.python.clone().unwrap_or_else(|| {
        let venv = PathBuf::from(".venv-peers/bin/python");
        if venv.exists() {
            venv
        } else {
            PathBuf::from("python3")
        }
    });
    let peer1 = peer_ms(&python, &input, h, w, a.repeats, 1);
    let peer_n = peer_ms(&python, &input, h, w, a.repeats, threads);

    // faces align over a folder of copies of the photo.
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("photos");
    std::fs::create_dir_all(&src)?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92).encode_image(&img)?;
    for i in 0..a.photos {
        std::fs::write(src.join(format!("{i:04}.jpg")), &jpeg)?;
    }
    let cropper = FaceCropper {
        detector: FaceDetector::new(Yunet::embedded()?, DetectOptions::default())?,
        template: AlignTemplate::celeba(),
    };
    let opts = AlignSetOptions {
        multiple: Multiple::All,
        format: CropFormat::Jpg,
        on_bad_image: crate::data::bad::BadImagePolicy::Skip,
        pixel_limit: crate::data::decode::DEFAULT_PIXEL_LIMIT,
    };
    // warm-up: plans for this photo size
    align_set(
        &src,
        &dir.path().join("warm"),
        &cropper,
        &opts,
        |_| {},
        |_| {},
    )
    .context("faces align warm-up")?;
    let t = Instant::now();
    let report = align_set(
        &src,
        &dir.path().join("aligned"),
        &cropper,
        &opts,
        |_| {},
        |_| {},
    )
    .context("faces align")?;
    let align_rate = a.photos as f64 / t.elapsed().as_secs_f64();

    let peer_json = |r: &Result<(f64, String), String>| match r {
        Ok((ms, v)) => serde_json::json!({"ms": ms, "onnxruntime": v}),
        Err(e) => serde_json::json!({"unavailable": e}),
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "photo": [img.width(), img.height()], "faces": faces, "input": [h, w],
                "threads": threads,
                "yunet_ms": net_ms,
                "onnxruntime_1_thread": peer_json(&peer1),
                "onnxruntime_threads": peer_json(&peer_n),
                "detect_ms": detect_ms, "detect_sizes": detector.options.sizes,
                "detect_single_scale_ms": detect_single_ms,
                "detect_4032x3024_ms": detect_phone_ms,
                "align_photos_per_s": align_rate, "align_crops": report.crops.len(),
            })
        );
        return Ok(());
    }
    println!(
        "photo {}x{} ({} face{}), YuNet input {h}x{w} (long side {}), median of {}, {threads} rayon threads",
        img.width(),
        img.height(),
        faces,
        if faces == 1 { "" } else { "s" },
        a.size,
        a.repeats
    );
    println!("{:<52} {:>10}", "", "ms/photo");
    println!(
        "{:<52} {:>10.2}",
        "YuNet network, faceattr (tract, 1 thread)", net_ms
    );
    for (label, r) in [("1 thread", &peer1), ("threads", &peer_n)] {
        let name = match r {
            Ok((_, v)) => format!(
                "YuNet network, onnxruntime {v} ({})",
                if label == "threads" {
                    format!("{threads} threads")
                } else {
                    label.to_string()
                }
            ),
            Err(_) => format!("YuNet network, onnxruntime ({label})"),
        };
        match r {
            Ok((ms, _)) => println!("{name:<52} {ms:>10.2}"),
            Err(e) => println!("{name:<52} {:>10}   ({e})", "n/a"),
        }
    }
    println!(
        "{:<52} {:>10.2}",
        format!("faceattr detect, one scale ({})", a.size),
        detect_single_ms
    );
    println!(
        "{:<52} {:>10.2}",
        format!(
            "faceattr detect, scales {:?} (default)",
            detector.options.sizes
        ),
        detect_ms
    );
    println!(
        "{:<52} {:>10.2}",
        "faceattr detect, default scales, 4032x3024 photo", detect_phone_ms
    );
    println!(
        "faces align: {:.1} photos/s over {} JPEG copies ({} crops written)",
        align_rate,
        a.photos,
        report.crops.len()
    );
    Ok(())
}
