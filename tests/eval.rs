//! `faceattr eval`, `card` and `predict --explain` on a model trained in the test from
//! generated images: metrics recomputed independently, valid pictures, the subgroup table on
//! a fake attribute file, and Grad-CAM heat on the coloured "face".

mod common;

use std::path::Path;
use std::process::Command;

use faceattr::data::synthetic::write_dataset;
use faceattr::train::trainer::train;

fn trained(root: &Path) -> std::path::PathBuf {
    write_dataset(&root.join("data"), [60, 10, 12], 178, 218, 0).unwrap();
    let mut args = common::train_args(
        &root.join("data"),
        &root.join("run"),
        &faceattr::cli::demo::DEMO_WIDTHS,
    );
    args.epochs = 5;
    args.head = 32;
    train(args, false, true).unwrap();
    root.join("run/weights/best.safetensors")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_faceattr"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn eval_report_pictures_subgroups_card_and_explanations() {
    let d = tempfile::tempdir().unwrap();
    let model = trained(d.path());
    let test = d.path().join("data/test");
    // a fake attribute file: "Odd" marks odd-numbered files, "Never" none
    let mut attrs = String::from("24\nOdd Never\n");
    for class in ["cool", "warm"] {
        for i in 0..12 {
            let _ = class;
            attrs.push_str(&format!(
                "{i:04}.jpg {} -1\n",
                if i % 2 == 1 { "1" } else { "-1" }
            ));
        }
    }
    let attr_file = d.path().join("attrs.txt");
    std::fs::write(&attr_file, attrs).unwrap();
    let out = d.path().join("eval");
    let o = run(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--attributes",
        attr_file.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    // recompute the figures from predict's own probabilities
    let p = run(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--json",
        test.to_str().unwrap(),
    ]);
    let preds: Vec<serde_json::Value> = String::from_utf8(p.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(preds.len(), 24);
    let mut confusion = [[0u64; 2]; 2];
    for pr in &preds {
        let path = pr["path"].as_str().unwrap();
        let t = usize::from(path.contains("/warm/"));
        let pl = usize::from(pr["label"] == "warm");
        confusion[t][pl] += 1;
    }
    let got: Vec<Vec<u64>> = r["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(got, vec![confusion[0].to_vec(), confusion[1].to_vec()]);
    assert_eq!(got.iter().flatten().sum::<u64>(), 24);
    let acc = (confusion[0][0] + confusion[1][1]) as f64 / 24.0;
    assert!((r["accuracy"].as_f64().unwrap() - acc).abs() < 1e-12);
    assert!(
        acc >= 0.75,
        "the tiny model should learn the colours, got {acc}"
    );
    let recall_warm = confusion[1][1] as f64 / 12.0;
    assert!((r["per_class"][1]["recall"].as_f64().unwrap() - recall_warm).abs() < 1e-12);
    assert_eq!(r["per_class"][1]["support"], 12);
    let auc = r["roc_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc) && auc >= acc - 0.25);
    for key in ["ece", "loss"] {
        assert!(r[key].as_f64().unwrap().is_finite(), "{key}");
    }
    // subgroups: "Odd" splits 12/12, "Never" has nobody with it
    let sg = r["subgroups"].as_array().unwrap();
    let odd = sg.iter().find(|g| g["attribute"] == "Odd").unwrap();
    assert_eq!(
        (odd["n_with"].as_u64(), odd["n_without"].as_u64()),
        (Some(12), Some(12))
    );
    let never = sg.iter().find(|g| g["attribute"] == "Never").unwrap();
    assert_eq!(never["n_with"], 0);
    // pictures of the expected sizes (subgroups: one bar pair, "Never" has nobody to compare)
    for (f, size) in [
        ("confusion_matrix.png", (560, 520)),
        ("roc.png", (520, 520)),
        ("reliability.png", (520, 520)),
        ("subgroups.png", (900, 80 + 22)),
    ] {
        let img = image::open(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!((img.width(), img.height()), size, "{f}");
    }
    let errors = image::open(out.join("errors.png")).unwrap();
    assert_eq!(errors.width(), 512);
    let card = std::fs::read_to_string(out.join("card.md")).unwrap();
    assert!(
        card.contains("appearance is not a person's gender") && card.contains("accuracy"),
        "{card}"
    );
    let c = run(&["card", "--model", model.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&c.stdout).contains("## Limits"));

    // Grad-CAM: heat on the coloured ellipse rather than the grey background; the annotated
    // copies come from the same decode, at the photo's own size; batches of 5 over 12 photos
    let cam_dir = d.path().join("cam");
    let ann_dir = d.path().join("ann");
    let warm = test.join("warm");
    let e = run(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--batch",
        "5",
        "--explain",
        cam_dir.to_str().unwrap(),
        "--annotate",
        ann_dir.to_str().unwrap(),
        warm.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let photos = std::fs::read_dir(&warm).unwrap().count();
    assert_eq!(String::from_utf8_lossy(&e.stdout).lines().count(), photos);
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for i in 0..12 {
        let photo = image::open(warm.join(format!("{i:04}.jpg")))
            .unwrap()
            .to_rgb8();
        let cam = image::open(cam_dir.join(format!("{i:04}.gradcam.png")))
            .unwrap()
            .to_rgb8();
        assert_eq!(cam.dimensions(), photo.dimensions());
        let annotated = image::open(ann_dir.join(format!("{i:04}.jpg"))).unwrap();
        assert_eq!(annotated.width(), photo.width());
        for (p, c) in photo.pixels().zip(cam.pixels()) {
            // heat = how far the blend moved towards red/yellow (jet's hot end) from the photo
            let heat = c.0[0] as f32 - 0.55 * p.0[0] as f32;
            if p.0[0] as i32 - p.0[2] as i32 > 50 {
                inside.push(heat)
            } else {
                outside.push(heat)
            }
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len().max(1) as f32;
    assert!(
        mean(&inside) > mean(&outside),
        "heat inside {} vs outside {}",
        mean(&inside),
        mean(&outside)
    );
}

#[test]
fn eval_refuses_data_with_other_classes_and_non_models() {
    let d = tempfile::tempdir().unwrap();
    let model = trained(d.path());
    for c in ["cat", "dog"] {
        std::fs::create_dir_all(d.path().join("other").join(c)).unwrap();
        std::fs::write(d.path().join("other").join(c).join("x.jpg"), b"x").unwrap();
    }
    let o = run(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        d.path().join("other").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("[\"cat\", \"dog\"]"));
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/torch/tiny_vgg16.safetensors");
    let o = run(&["predict", "--model", fixture.to_str().unwrap(), "x.jpg"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a model saved by faceattr"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
