//! The binary as a user runs it: summary counts, JSON shapes, features on fixture images,
//! and clear errors.

mod common;

use std::process::Command;

use common::*;

fn faceattr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faceattr"))
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn summary_prints_the_reference_counts() {
    let out = faceattr(&["summary", "--weights", "none"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("14 781 122"), "{text}");
    assert!(text.contains("7 145 602"), "{text}");
    assert!(text.contains("7 635 520"), "{text}");
    assert!(text.contains("block5_conv3"));
}

#[test]
fn summary_json_has_layers_and_params() {
    let out = faceattr(&[
        "summary",
        "--weights",
        "none",
        "--trainable",
        "block4",
        "--json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let b4 = layers.iter().find(|l| l["name"] == "block4_conv1").unwrap();
    assert_eq!(b4["trainable"], true);
    assert_eq!(b4["output_shape"], serde_json::json!([null, 27, 22, 512]));
    assert_eq!(b4["kind"], "Conv2D");
    let trainable = v["params"]["trainable"].as_u64().unwrap();
    // block4 adds 3 convs: 256*512*9+512 + 2*(512*512*9+512)
    assert_eq!(trainable, 7_145_602 + 1_180_160 + 2 * 2_359_808);
    assert_eq!(v["params"]["total"], 14_781_122);
}

#[test]
fn summary_of_fixture_weights_uses_their_widths() {
    let w = fixtures().join("keras/tiny_vgg16_notop.h5");
    let out = faceattr(&[
        "summary",
        "--weights",
        w.to_str().unwrap(),
        "--head",
        "8",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"]["total"], 15_846);
}

#[test]
fn features_json_matches_keras() {
    let w = fixtures().join("keras/tiny_vgg16_notop.h5");
    let img = fixtures().join("keras/in_1.png");
    let out = faceattr(&[
        "features",
        "--weights",
        w.to_str().unwrap(),
        "--json",
        img.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = floats(&v["images"][0]["features"]);
    let want = floats(&reference("keras")["images"][1]["pooled_features"]);
    assert!(rel_error(&got, &want) < 1e-5);
}

#[test]
fn features_reports_a_bad_image_and_still_prints_the_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let w = fixtures().join("keras/tiny_vgg16_notop.h5");
    let good = fixtures().join("keras/in_0.png");
    let out = faceattr(&[
        "features",
        "--weights",
        w.to_str().unwrap(),
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    assert!(
        stderr.contains("1 of 2 images could not be read"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("in_0.png"));
}

#[test]
fn bad_flags_are_explained() {
    let out = faceattr(&["summary", "--trainable", "block9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown layer 'block9'"));
    let out = faceattr(&["summary", "--input", "10x10"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("too small"));
}

#[test]
fn bench_model_json_has_the_issue_keys_and_the_work_per_image() {
    // W3 only, at 32x32 so that block5 sees 2x2 pixels: quick even unoptimised
    let out = faceattr(&[
        "bench",
        "model",
        "--only",
        "w3",
        "--input",
        "32x32",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(v["peak_gflops"].as_f64().expect("peak_gflops") > 0.0);
    assert!(v["w3_b12_img_s"].as_f64().expect("w3") > 0.0);
    assert!(v.get("w1_b12_img_s").is_none(), "w1 was not asked for: {v}");
    assert_eq!(v["kernels"], "faceattr");
    // block5 forward at 2x2: 3 convs of 2*4*(9*512)*512 FLOP; the step is 2+3+3 such passes
    let pass = 2.0 * 4.0 * 9.0 * 512.0 * 512.0 / 1e9;
    let w3 = v["gflop_per_image"]["w3"].as_f64().expect("w3 work");
    assert!((w3 - 8.0 * pass).abs() < 1e-9, "{w3} vs {}", 8.0 * pass);
}

#[test]
fn data_synth_writes_the_three_splits_and_refuses_two_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("synth");
    let o = faceattr(&[
        "data",
        "synth",
        "--out",
        out.to_str().expect("utf-8"),
        "--per-class",
        "3,2,1",
        "--size",
        "40x32",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (split, n) in [("train", 3), ("valid", 2), ("test", 1)] {
        for class in ["cool", "warm"] {
            let files: Vec<_> = std::fs::read_dir(out.join(split).join(class))
                .expect("class folder")
                .collect();
            assert_eq!(files.len(), n, "{split}/{class}");
        }
    }
    let img = image::open(out.join("train/warm/0000.jpg")).expect("a JPEG");
    assert_eq!((img.width(), img.height()), (32, 40));
    let o = faceattr(&[
        "data",
        "synth",
        "--out",
        out.to_str().expect("utf-8"),
        "--per-class",
        "1,2",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("three counts"));
}
