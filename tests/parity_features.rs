//! Pooled features and preprocessing against the numbers Keras and PyTorch produced from the
//! same weights and images (`../shared/fixtures/*/reference.json`).

mod common;

use common::*;
use faceattr::features::extract;
use faceattr::model::vgg16::Vgg16;
use faceattr::preprocess::Preprocessing;

fn features_of(weights: &str, framework: &str, prep: Preprocessing) -> Vec<Vec<f32>> {
    let ws = faceattr::weights::load(&fixtures().join(weights)).expect("weights load");
    assert_eq!(ws.preprocessing, prep, "{weights}: default preprocessing");
    let base = Vgg16::from_weights(&ws, &device()).expect("base builds");
    extract(&base, &spec(prep), &inputs(framework), 4, &device(), |_| {})
        .into_iter()
        .map(|r| r.features.expect("fixture image decodes"))
        .collect()
}

fn check_against(framework: &str, feats: &[Vec<f32>], what: &str) {
    let r = reference(framework);
    for (i, f) in feats.iter().enumerate() {
        let want = floats(&r["images"][i]["pooled_features"]);
        let err = rel_error(f, &want);
        assert!(
            err < 1e-5,
            "{what}: image {i}: relative error {err:e}\n ours {f:?}\n want {want:?}"
        );
    }
}

#[test]
fn keras_h5_features_match_keras() {
    let feats = features_of("keras/tiny_vgg16_notop.h5", "keras", Preprocessing::Caffe);
    check_against("keras", &feats, "keras h5");
}

#[test]
fn torch_zip_pth_features_match_pytorch() {
    let feats = features_of("torch/tiny_vgg16.pth", "torch", Preprocessing::Torch);
    check_against("torch", &feats, "zip .pth");
}

#[test]
fn torch_legacy_pth_features_match_pytorch() {
    let feats = features_of("torch/tiny_vgg16_legacy.pth", "torch", Preprocessing::Torch);
    check_against("torch", &feats, "legacy .pth");
}

#[test]
fn torchvision_and_timm_safetensors_features_match_pytorch() {
    for file in [
        "torch/tiny_vgg16.safetensors",
        "torch/tiny_vgg16_timm.safetensors",
    ] {
        let feats = features_of(file, "torch", Preprocessing::Torch);
        check_against("torch", &feats, file);
    }
}

#[test]
fn all_torch_formats_give_identical_tensors() {
    let load = |f: &str| {
        faceattr::weights::load(&fixtures().join(f))
            .expect("load")
            .tensors
    };
    let zip = load("torch/tiny_vgg16.pth");
    assert_eq!(
        zip.len(),
        26,
        "13 convs x (weight, bias); the classifier is dropped"
    );
    assert_eq!(zip, load("torch/tiny_vgg16_legacy.pth"));
    assert_eq!(zip, load("torch/tiny_vgg16.safetensors"));
    assert_eq!(zip, load("torch/tiny_vgg16_timm.safetensors"));
}

#[test]
fn keras_probe_pixels_are_preprocessed_exactly() {
    let r = reference("keras");
    let spec = spec(Preprocessing::Caffe);
    for (i, path) in inputs("keras").iter().enumerate() {
        let img = spec.load(path).expect("decodes");
        for probe in r["images"][i]["probes"].as_array().expect("probes") {
            let (row, col) = (
                probe["row"].as_u64().unwrap() as u32,
                probe["col"].as_u64().unwrap() as u32,
            );
            let rgb = img.get_pixel(col, row).0;
            let want_rgb: Vec<u8> = probe["rgb_uint8"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u8)
                .collect();
            assert_eq!(rgb.to_vec(), want_rgb, "image {i} pixel ({row},{col})");
            let want = floats(&probe["preprocessed_bgr"]);
            for (c, want) in want.iter().enumerate() {
                assert_eq!(
                    Preprocessing::Caffe.channel(rgb, c),
                    *want,
                    "image {i} ({row},{col}) channel {c}"
                );
            }
        }
    }
}

#[test]
fn torch_probe_pixels_are_normalised_exactly() {
    let r = reference("torch");
    let spec = spec(Preprocessing::Torch);
    for (i, path) in inputs("torch").iter().enumerate() {
        let img = spec.load(path).expect("decodes");
        for s in r["images"][i]["samples"].as_array().expect("samples") {
            let (y, x) = (
                s["y"].as_u64().unwrap() as u32,
                s["x"].as_u64().unwrap() as u32,
            );
            let rgb = img.get_pixel(x, y).0;
            let want = floats(&s["normalized"]);
            for (c, want) in want.iter().enumerate() {
                assert_eq!(
                    Preprocessing::Torch.channel(rgb, c),
                    *want,
                    "image {i} ({y},{x}) channel {c}"
                );
            }
        }
    }
}
