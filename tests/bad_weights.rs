//! Every way a weights file can be wrong gives an error that names the file, the tensor and
//! what was expected; never a panic.

mod common;

use std::path::Path;

use common::*;
use faceattr::model::vgg16::Vgg16;
use faceattr::weights::{self, WeightsError};

/// A safetensors file from (name, shape, values), written by hand so the test owns its bytes.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, vals) in tensors {
        let start = data.len();
        for v in vals {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

/// The tiny torchvision tensors, edited by `edit`, written to a temporary safetensors file.
fn edited_tiny(
    dir: &Path,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>),
) -> std::path::PathBuf {
    let raw =
        faceattr::weights::torch_pth::load_raw(&fixtures().join("torch/tiny_vgg16.pth")).unwrap();
    let mut list: Vec<_> = raw.into_iter().map(|(k, t)| (k, t.shape, t.data)).collect();
    edit(&mut list);
    let path = dir.join("edited.safetensors");
    write_safetensors(&path, &list);
    path
}

fn base_error(path: &Path) -> WeightsError {
    let ws = weights::load(path).expect("file itself parses");
    Vgg16::from_weights(&ws, &device()).expect_err("must be rejected")
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_tiny(dir.path(), |l| {
        l.retain(|(k, _, _)| k != "features.28.weight")
    });
    let msg = base_error(&path).to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("'block5_conv3.weight' is missing"), "{msg}");
}

#[test]
fn wrong_shape_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_tiny(dir.path(), |l| {
        let t = l
            .iter_mut()
            .find(|(k, _, _)| k == "features.26.weight")
            .unwrap();
        t.1 = vec![16, 8, 3, 3];
        t.2.truncate(16 * 8 * 9);
    });
    let msg = base_error(&path).to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("'block5_conv2.weight' has shape [16, 8, 3, 3], expected [any, 16, 3, 3]"),
        "{msg}"
    );
}

#[test]
fn non_finite_value_is_reported_with_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_tiny(dir.path(), |l| {
        let t = l
            .iter_mut()
            .find(|(k, _, _)| k == "features.0.bias")
            .unwrap();
        t.2[2] = f32::NAN;
    });
    let msg = base_error(&path).to_string();
    assert!(
        msg.contains("'block1_conv1.bias' has a non-finite value (NaN) at index 2"),
        "{msg}"
    );
}

#[test]
fn truncated_files_of_every_format_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "torch/tiny_vgg16.pth",
        "torch/tiny_vgg16_legacy.pth",
        "torch/tiny_vgg16.safetensors",
        "keras/tiny_vgg16_notop.h5",
    ] {
        let bytes = std::fs::read(fixtures().join(file)).unwrap();
        let name = Path::new(file).file_name().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let result =
            weights::load(&path).and_then(|ws| Vgg16::from_weights(&ws, &device()).map(|_| ()));
        let msg = result.expect_err(file).to_string();
        assert!(msg.contains(&path.display().to_string()), "{file}: {msg}");
    }
}

#[test]
fn pickle_that_would_run_code_is_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.pth");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("evil/data.pkl", opts).unwrap();
    zip.write_all(b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.")
        .unwrap();
    zip.finish().unwrap();
    let err = weights::load(&path).expect_err("must be refused");
    assert!(matches!(err, WeightsError::UnsafePickle { .. }), "{err}");
    assert!(err.to_string().contains("posix.system"), "{err}");
}

#[test]
fn unknown_format_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are not weights").unwrap();
    let msg = weights::load(&path).expect_err("unknown").to_string();
    assert!(msg.contains("not a weights file faceattr knows"), "{msg}");
    let missing = dir.path().join("nope.h5");
    let msg = weights::load(&missing).expect_err("missing").to_string();
    assert!(
        msg.contains("nope.h5") && msg.contains("cannot read"),
        "{msg}"
    );
}

/// The tiny test model rewritten with its metadata changed by `edit` and tensors kept by `keep`.
fn tampered(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut serde_json::Value),
    keep: impl Fn(&str) -> bool,
) -> std::path::PathBuf {
    let src = tiny_model();
    let bytes = std::fs::read(&src).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut md = header.metadata().clone().unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&md["faceattr"]).unwrap();
    edit(&mut meta);
    md.insert("faceattr".into(), meta.to_string());
    let tensors: Vec<(String, weights::NamedTensor)> =
        faceattr::weights::safetensors_import::read_all(&src, &bytes)
            .unwrap()
            .into_iter()
            .filter(|(n, _)| keep(n))
            .collect();
    let out = dir.join(name);
    std::fs::write(
        &out,
        faceattr::model::saved::to_safetensors(&tensors, md).unwrap(),
    )
    .unwrap();
    out
}

#[test]
fn a_saved_model_whose_metadata_cannot_run_is_refused_naming_the_field() {
    let d = tempfile::tempdir().unwrap();
    let device = faceattr::device::Backend::Flex.device().unwrap();
    let all = |_: &str| true;
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "zero-input",
            Box::new(|m| m["spec"]["input_hw"] = serde_json::json!([0, 178])),
            "spec.input_hw 0x178",
        ),
        (
            "tiny-input",
            Box::new(|m| m["spec"]["input_hw"] = serde_json::json!([16, 16])),
            "spec.input_hw 16x16",
        ),
        (
            "huge-input",
            Box::new(|m| m["spec"]["input_hw"] = serde_json::json!([100000, 178])),
            "spec.input_hw",
        ),
        (
            "trainable",
            Box::new(|m| m["spec"]["trainable"] = serde_json::json!(14)),
            "spec.trainable: layer 14",
        ),
        (
            "no-classes",
            Box::new(|m| m["spec"]["class_names"] = serde_json::json!([])),
            "spec.class_names: 0 names",
        ),
        (
            "empty-class",
            Box::new(|m| m["spec"]["class_names"] = serde_json::json!(["a", " "])),
            "an empty class name",
        ),
        (
            "same-class",
            Box::new(|m| m["spec"]["class_names"] = serde_json::json!(["a", "a"])),
            "'a' twice",
        ),
        (
            "no-hidden",
            Box::new(|m| m["hidden"] = serde_json::json!(0)),
            "hidden: 0 units",
        ),
        (
            "zero-width",
            Box::new(|m| m["widths"][3] = serde_json::json!(0)),
            "metadata widths",
        ),
    ];
    for (name, edit, expected) in cases {
        let path = tampered(d.path(), &format!("{name}.safetensors"), edit, all);
        let e = faceattr::model::saved::load(&path, &device)
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"))
            .to_string();
        assert!(e.contains(&format!("{name}.safetensors")), "{e}");
        assert!(e.contains(expected), "{name}: {e}");
    }
    // a model file without its head is refused, not given a random one
    let headless = tampered(
        d.path(),
        "headless.safetensors",
        |_| {},
        |n| !n.starts_with("dense"),
    );
    let e = match faceattr::model::saved::load(&headless, &device) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a headless model loaded"),
    };
    assert!(e.contains("no head tensors"), "{e}");
}

#[test]
fn a_width_of_zero_is_refused_before_any_kernel_runs() {
    let d = tempfile::tempdir().unwrap();
    faceattr::data::synthetic::write_dataset(&d.path().join("data"), [4, 2, 0], 178, 218, 0)
        .unwrap();
    let mut widths = faceattr::cli::demo::DEMO_WIDTHS.to_vec();
    widths[5] = 0;
    let args = train_args(&d.path().join("data"), &d.path().join("run"), &widths);
    let e = match faceattr::train::trainer::train(args, false, true) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("trained with a 0-channel layer"),
    };
    assert!(
        e.contains("--widths: every convolution needs at least 1 channel"),
        "{e}"
    );
    // a weights file with a 0-channel layer is refused the same way
    let path = edited_tiny(d.path(), |l| {
        for (k, shape, data) in l.iter_mut() {
            if k.starts_with("features.5.") {
                shape[0] = 0;
                data.clear();
            }
            if k == "features.7.weight" {
                shape[1] = 0;
                data.clear();
            }
        }
    });
    let e = base_error(&path).to_string();
    assert!(
        e.contains("block2_conv1.weight has 0 output channels"),
        "{e}"
    );
}

// ---- Crafted files: each once crashed or exhausted the process; now each is a clear error.

/// A minimal pickle writer: enough of protocol 2 to write a state dict by hand.
mod pkl {
    pub fn str(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    pub fn int(out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(&[0x8a, 8]);
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn ints(out: &mut Vec<u8>, vs: &[i64]) {
        out.push(b'(');
        for &v in vs {
            int(out, v);
        }
        out.push(b't');
    }
    /// `{name: _rebuild_tensor_v2(('storage', FloatStorage, '0', 'cpu', numel), offset, size,
    /// stride)}`.
    pub fn state_dict(
        name: &str,
        numel: i64,
        offset: i64,
        size: &[i64],
        stride: &[i64],
    ) -> Vec<u8> {
        let mut p = b"\x80\x02}(".to_vec();
        str(&mut p, name);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        str(&mut p, "storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        str(&mut p, "0");
        str(&mut p, "cpu");
        int(&mut p, numel);
        p.extend_from_slice(b"tQ");
        int(&mut p, offset);
        ints(&mut p, size);
        ints(&mut p, stride);
        p.extend_from_slice(b"tRu.");
        p
    }
}

/// A zip-format `.pth` with `data.pkl` and one storage `0` of `storage` bytes.
fn pth(dir: &Path, name: &str, pkl: &[u8], storage: &[u8]) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pkl).unwrap();
    zip.start_file("archive/data/0", opts).unwrap();
    zip.write_all(storage).unwrap();
    zip.finish().unwrap();
    path
}

fn malformed(path: &Path) -> String {
    let err = weights::load(path).expect_err("must be refused");
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Malformed { .. }), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    msg
}

#[test]
fn a_sane_hand_written_pth_reads_back() {
    // The writer above makes files the reader accepts, so the refusals below are about the
    // crafted field alone.
    let d = tempfile::tempdir().unwrap();
    let storage: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = pth(
        d.path(),
        "ok.pth",
        &pkl::state_dict("features.0.bias", 6, 0, &[3, 2], &[1, 3]),
        &storage,
    );
    let raw = faceattr::weights::torch_pth::load_raw(&path).unwrap();
    assert_eq!(raw["features.0.bias"].shape, vec![3, 2]);
    assert_eq!(
        raw["features.0.bias"].data,
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
}

#[test]
fn a_stride_that_wraps_around_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = pkl::state_dict("features.0.bias", 4, 0, &[4], &[1 << 61]);
    let path = pth(d.path(), "stride.pth", &p, &[0u8; 16]);
    let msg = malformed(&path);
    assert!(msg.contains("overflow") || msg.contains("needs"), "{msg}");
}

#[test]
fn a_view_of_two_to_the_forty_elements_is_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    let p = pkl::state_dict("features.0.bias", 1, 0, &[1 << 40], &[0]);
    let path = pth(d.path(), "broadcast.pth", &p, &[0u8; 4]);
    let msg = malformed(&path);
    assert!(
        msg.contains("views 1099511627776 elements of a storage that holds 1"),
        "{msg}"
    );
}

#[test]
fn a_memo_that_doubles_a_list_forty_times_is_stopped_early() {
    // [x] -> [[x],[x]] -> ... 40 times: each memo GET used to deep-copy, 2^40 values.
    let d = tempfile::tempdir().unwrap();
    let mut p = b"\x80\x02(K\x01lq\x00".to_vec();
    for _ in 0..40 {
        p.extend_from_slice(b"(h\x00h\x00lq\x00");
    }
    p.push(b'.');
    assert!(p.len() < 400);
    let path = pth(d.path(), "memo.pth", &p, &[]);
    let msg = malformed(&path);
    assert!(msg.contains("builds far more than its"), "{msg}");
}

#[test]
fn values_nested_a_thousand_deep_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut p = b"\x80\x02".to_vec();
    p.extend(std::iter::repeat_n(b']', 1000));
    p.extend(std::iter::repeat_n(b'a', 999));
    p.push(b'.');
    let path = pth(d.path(), "deep.pth", &p, &[]);
    let msg = malformed(&path);
    assert!(msg.contains("nest more than 32 deep"), "{msg}");
}

#[test]
fn a_legacy_storage_count_near_the_top_of_u64_is_truncation() {
    // The legacy stream's int64 element count of the first storage, set to 2^63 - 1.
    let src = fixtures().join("torch/tiny_vgg16_legacy.pth");
    let mut bytes = std::fs::read(&src).unwrap();
    let first = faceattr::weights::torch_pth::load_raw(&src).unwrap();
    assert!(!first.is_empty());
    // The storage data begins right after the keys pickle: find the first count that matches
    // a real storage size (a u64 followed by that many f32s fits the file's remainder).
    let at = (0..bytes.len() - 8)
        .find(|&i| {
            let n = u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
            n > 0
                && n < 1 << 20
                && i > 64
                && bytes[i - 1] == b'.'
                && i + 8 + n as usize * 4 <= bytes.len()
        })
        .expect("a storage count");
    bytes[at..at + 8].copy_from_slice(&(i64::MAX as u64).to_le_bytes());
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("legacy.pth");
    std::fs::write(&path, &bytes).unwrap();
    let msg = malformed(&path);
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn hdf5_dimensions_larger_than_the_file_are_refused_before_allocating() {
    let src = fixtures().join("keras/tiny_vgg16_notop.h5");
    let mut bytes = std::fs::read(&src).unwrap();
    // The dataspace of block1_conv1's kernel: dims (3, 3, 3, 4) as u64, then the max dims.
    let pat: Vec<u8> = [3u64, 3, 3, 4]
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect();
    let hits: Vec<usize> = (0..bytes.len() - pat.len())
        .filter(|&i| bytes[i..].starts_with(&pat))
        .collect();
    assert!(!hits.is_empty());
    for &i in &hits {
        bytes[i..i + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("dims.h5");
    std::fs::write(&path, &bytes).unwrap();
    let msg = malformed(&path);
    assert!(msg.contains("block1_conv1"), "{msg}");
}

#[test]
fn a_one_dimensional_dense_weight_is_a_shape_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited_tiny(dir.path(), |l| {
        l.push(("head.fc1.weight".into(), vec![6], vec![0.5; 6]));
        l.push(("head.fc1.bias".into(), vec![2], vec![0.0; 2]));
    });
    let ws = weights::load(&path).expect("the file itself parses");
    use faceattr::preprocess::{Interpolation, Preprocessing};
    let spec = faceattr::model::ModelSpec {
        input_hw: (64, 48),
        preprocessing: Preprocessing::Torch,
        interpolation: Interpolation::Nearest,
        conventions: faceattr::model::Conventions::Keras,
        trainable: "block5_conv1".parse().expect("layer name"),
        class_names: vec!["a".into(), "b".into()],
        framing: Default::default(),
        decoding: Default::default(),
    };
    let err = faceattr::model::classifier::Classifier::from_weights(&ws, 2, spec, 0, &device())
        .expect_err("a 1-D dense weight cannot be used");
    let msg = err.to_string();
    assert!(msg.contains("'dense.weight' has shape [6]"), "{msg}");
}
