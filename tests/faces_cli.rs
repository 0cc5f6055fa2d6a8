//! The face commands as a user runs them: `faces detect` (JSON, annotated copies), `faces align`
//! over a class-folder tree with a photo without a face and a broken file, training on the
//! aligned set (the model records that it was aligned), then `predict` and `eval`, which detect
//! and align faces by themselves for such a model.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faceattr::preprocess::Framing;
use image::RgbImage;

fn faceattr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faceattr"))
        .args(args)
        .output()
        .expect("runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn astronaut_path() -> PathBuf {
    common::images().join("astronaut.png")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn detect_prints_json_and_draws_the_face() {
    let d = tempfile::tempdir().expect("tempdir");
    let annotated = d.path().join("annotated");
    let grey = d.path().join("grey.png");
    RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]))
        .save(&grey)
        .expect("write");
    let out = faceattr(&[
        "faces",
        "detect",
        "--json",
        "--annotate",
        s(&annotated),
        s(&astronaut_path()),
        s(&grey),
    ]);
    let lines = json_lines(&ok(&out));
    assert_eq!(lines.len(), 2);
    let a = &lines[0];
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(512), Some(512))
    );
    let faces = a["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 1);
    let b: Vec<f64> = faces[0]["box"]
        .as_array()
        .expect("box")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    // The README's face (centre 223, 120; 90 x 113), found here over two scales.
    assert!(
        (b[0] + b[2] / 2.0 - 223.1).abs() < 4.0 && (b[1] + b[3] / 2.0 - 119.6).abs() < 4.0,
        "{b:?}"
    );
    assert!((b[2] - 89.9).abs() < 8.0, "{b:?}");
    assert_eq!(
        faces[0]["landmarks"].as_array().expect("landmarks").len(),
        5
    );
    assert!(faces[0]["score"].as_f64().expect("score") >= 0.9);
    assert_eq!(lines[1]["faces"], serde_json::json!([]));

    let drawn = image::open(annotated.join("astronaut.jpg"))
        .expect("annotated copy")
        .to_rgb8();
    assert_eq!(drawn.dimensions(), (512, 512));
    // the box's left edge, halfway down the face, is drawn in bright green (JPEG: roughly)
    let px = drawn
        .get_pixel(b[0].round() as u32, (b[1] + b[3] / 2.0) as u32)
        .0;
    assert!(px[1] > 150 && px[0] < 100 && px[2] < 100, "{px:?}");
    let plain = image::open(annotated.join("grey.jpg"))
        .expect("copy")
        .to_rgb8();
    assert!(
        plain
            .pixels()
            .all(|p| p.0.iter().all(|&c| c.abs_diff(128) < 6))
    );
}

#[test]
fn exif_orientation_is_applied_before_detection() {
    use image::ImageEncoder;
    // A phone that held the camera sideways: pixels stored turned a quarter to the left, with
    // EXIF orientation 6 (turn right to view). The face must come back in upright coordinates.
    let d = tempfile::tempdir().expect("tempdir");
    let upright = image::imageops::crop_imm(
        &image::open(astronaut_path()).expect("astronaut").to_rgb8(),
        40,
        0,
        400,
        300,
    )
    .to_image();
    let stored = image::imageops::rotate270(&upright);
    let path = d.path().join("sideways.jpg");
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
    enc.set_exif_metadata(common::exif_orientation(6))
        .expect("exif");
    enc.write_image(
        stored.as_raw(),
        stored.width(),
        stored.height(),
        image::ExtendedColorType::Rgb8,
    )
    .expect("encode");
    std::fs::write(&path, &bytes).expect("write");
    let lines = json_lines(&ok(&faceattr(&["faces", "detect", "--json", s(&path)])));
    assert_eq!(
        (lines[0]["width"].as_u64(), lines[0]["height"].as_u64()),
        (Some(400), Some(300))
    );
    let faces = lines[0]["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 1, "{}", lines[0]);
    let eye = |k: usize| faces[0]["landmarks"][k][0].as_f64().expect("x");
    // upright: the image-left eye near x = 200 - 40, left of the other
    assert!(
        (eye(0) - 160.1).abs() < 8.0 && eye(0) < eye(1),
        "{}",
        lines[0]
    );
}

/// A class-folder tree of real photos: the astronaut, mirrored (a different-looking person
/// for the test's purpose), brightened; a photo without a face; a broken file.
fn photo_tree(root: &Path) {
    let photo = image::open(astronaut_path()).expect("astronaut").to_rgb8();
    for (class, name, img) in [
        ("female", "a.png", photo.clone()),
        ("female", "b.png", image::imageops::brighten(&photo, 25)),
        (
            "female",
            "c.png",
            image::imageops::crop_imm(&photo, 40, 0, 440, 400).to_image(),
        ),
        ("male", "a.png", image::imageops::flip_horizontal(&photo)),
        (
            "male",
            "b.png",
            image::imageops::brighten(&image::imageops::flip_horizontal(&photo), -25),
        ),
        (
            "male",
            "c.png",
            image::imageops::flip_horizontal(
                &image::imageops::crop_imm(&photo, 40, 0, 440, 400).to_image(),
            ),
        ),
        (
            "male",
            "sky.png",
            RgbImage::from_pixel(400, 300, image::Rgb([90, 140, 230])),
        ),
    ] {
        std::fs::create_dir_all(root.join(class)).expect("mkdir");
        img.save(root.join(class).join(name)).expect("write");
    }
    std::fs::write(
        root.join("female/broken.jpg"),
        b"\xff\xd8\xff\xe0 cut short",
    )
    .expect("write");
}

#[test]
fn align_train_predict_and_eval_on_faces() {
    let d = tempfile::tempdir().expect("tempdir");
    let photos = d.path().join("photos");
    photo_tree(&photos);
    let aligned = d.path().join("aligned");
    let out = faceattr(&["faces", "align", "--out", s(&aligned), s(&photos)]);
    let text = ok(&out);
    assert!(
        text.contains("8 photos: 6 aligned crops from 6 photos, 2 skipped"),
        "{text}"
    );

    // crops keep the class folders and CelebA's size
    for class in ["female", "male"] {
        for name in ["a", "b", "c"] {
            let p = aligned.join(class).join(format!("{name}.jpg"));
            let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert_eq!((img.width(), img.height()), (178, 218));
        }
    }
    let mut rdr = csv::Reader::from_path(aligned.join("faces.csv")).expect("faces.csv");
    let headers: Vec<String> = rdr
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(
        headers,
        [
            "source", "label", "face", "x", "y", "width", "height", "score", "output"
        ]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|r| &r[2] == "0" && r[7].parse::<f32>().expect("score") >= 0.9)
    );
    assert_eq!(&rows[0][1], "female");
    let skipped = std::fs::read_to_string(aligned.join("skipped.csv")).expect("skipped.csv");
    assert!(skipped.contains("sky.png,no face found"), "{skipped}");
    assert!(skipped.contains("broken.jpg"), "{skipped}");
    let marker = faceattr::data::framing::read(&aligned)
        .expect("marker")
        .expect("present");
    assert_eq!(marker.1.framing, Framing::CelebaAligned);
    assert_eq!(marker.1.size_hw, Some((218, 178)));

    // Training on the aligned set records the framing in the model.
    let run = d.path().join("run");
    let mut args = faceattr::train::config::TrainArgs::new(&aligned, "random", &run).expect("args");
    args.widths = Some(faceattr::cli::demo::DEMO_WIDTHS.to_vec());
    args.epochs = 1;
    args.head = 8;
    args.valid_fraction = 0.34;
    faceattr::train::trainer::train(args, false, true).expect("trains");
    let model = run.join("weights/best.safetensors");
    let loaded =
        faceattr::model::saved::load(&model, &burn::tensor::Device::flex()).expect("loads");
    assert_eq!(loaded.meta.spec.framing, Framing::CelebaAligned);

    // predict detects and aligns by itself for this model
    let notes = d.path().join("notes");
    let grey = photos.join("male/sky.png");
    let out = faceattr(&[
        "predict",
        "--model",
        s(&model),
        "--json",
        "--annotate",
        s(&notes),
        "--explain",
        s(&notes),
        s(&astronaut_path()),
        s(&grey),
    ]);
    let lines = json_lines(&ok(&out));
    assert_eq!(lines.len(), 2);
    let faces = lines[0]["faces"].as_array().expect("faces");
    assert_eq!(faces.len(), 1, "{}", lines[0]);
    let f = &faces[0];
    let label = f["label"].as_str().expect("label");
    assert!(["female", "male"].contains(&label));
    let p = |c: &str| f["probs"][c].as_f64().expect("prob");
    let other = if label == "male" { "female" } else { "male" };
    assert!(p(label) >= p(other) && (0.0..=1.0).contains(&p(label)));
    assert_eq!(f["box"].as_array().expect("box").len(), 4);
    assert_eq!(lines[1]["faces"], serde_json::json!([]));
    let drawn = image::open(notes.join("astronaut.jpg"))
        .expect("annotated")
        .to_rgb8();
    assert_eq!(drawn.dimensions(), (512, 512));
    assert!(
        drawn.as_raw()
            != image::open(astronaut_path())
                .expect("photo")
                .to_rgb8()
                .as_raw()
    );
    let heat = image::open(notes.join("astronaut.face0.gradcam.png")).expect("heat map");
    assert_eq!((heat.width(), heat.height()), (178, 218));

    // the human-readable line names the face and its label
    let out = faceattr(&["predict", "--model", s(&model), s(&astronaut_path())]);
    let text = ok(&out);
    assert!(text.contains("face 0 at") && text.contains(" %"), "{text}");

    // --faces whole keeps the whole-image answer
    let out = faceattr(&[
        "predict",
        "--model",
        s(&model),
        "--faces",
        "whole",
        "--json",
        s(&astronaut_path()),
    ]);
    let whole = json_lines(&ok(&out));
    assert!(whole[0].get("faces").is_none() && whole[0]["label"].is_string());

    // eval scores the original photos by their largest face
    let eval_out = d.path().join("eval");
    let out = faceattr(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&photos),
        "--out",
        s(&eval_out),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(&out)).expect("report JSON");
    assert_eq!(report["framing"], "faces");
    assert_eq!(report["n"], 6);
    let left_out: Vec<String> = report["unreadable"]
        .as_array()
        .expect("unreadable")
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["path"].as_str().unwrap_or(""),
                b["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(left_out.len(), 2, "{left_out:?}");
    assert!(
        left_out.iter().any(|l| l.contains("sky.png no face found")),
        "{left_out:?}"
    );
}

#[test]
fn align_refuses_what_it_cannot_use_with_clear_errors() {
    let d = tempfile::tempdir().expect("tempdir");
    let out = faceattr(&[
        "faces",
        "align",
        "--out",
        s(&d.path().join("o")),
        s(&d.path().join("missing")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("no such file"),
        "{err}"
    );

    let bad_model = d.path().join("not-onnx.onnx");
    std::fs::write(&bad_model, b"definitely not protobuf").expect("write");
    let out = faceattr(&[
        "faces",
        "detect",
        "--detector",
        s(&bad_model),
        s(&astronaut_path()),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not-onnx.onnx") && err.contains("not a usable face detector"),
        "{err}"
    );

    let out = faceattr(&[
        "faces",
        "detect",
        "--detect-size",
        "0",
        s(&astronaut_path()),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("detection size 0"));

    // --on-bad-image fail stops at the broken file and names it
    let photos = d.path().join("photos");
    photo_tree(&photos);
    let out = faceattr(&[
        "faces",
        "align",
        "--on-bad-image",
        "fail",
        "--out",
        s(&d.path().join("o2")),
        s(&photos),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.jpg"), "{err}");
}
