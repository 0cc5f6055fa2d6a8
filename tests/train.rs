//! Training end to end on generated images with a tiny VGG16: the frozen-feature cache is
//! exact, a killed run resumes to the same weights, the run folder has everything, a
//! non-finite loss stops cleanly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use faceattr::data::synthetic::write_dataset;
use faceattr::model::saved;
use faceattr::train::config::{CacheMode, TrainArgs};
use faceattr::train::trainer::train;

const WIDTHS: [usize; 13] = [4, 4, 8, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16];

/// 24 + 8 + 8 images per class, 48 wide x 64 high (the model's input size: no resampling).
fn dataset(root: &Path) -> PathBuf {
    write_dataset(root, [24, 8, 8], 48, 64, 11).unwrap();
    root.to_path_buf()
}

fn args(data: &Path, out: &Path) -> TrainArgs {
    let mut a = common::train_args(data, out, &WIDTHS);
    a.epochs = 3;
    a.batch = 8;
    a.head = 8;
    a.seed = 5;
    a.input = (64, 48);
    a
}

fn weights(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let loaded = saved::load(path, &burn::tensor::Device::flex()).unwrap();
    loaded
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data))
        .collect()
}

fn max_diff(
    a: &std::collections::BTreeMap<String, Vec<f32>>,
    b: &std::collections::BTreeMap<String, Vec<f32>>,
) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, va) in a {
        assert_eq!(va.len(), b[k].len(), "{k}: lengths differ");
    }
    common::max_or_nan(
        a.iter()
            .flat_map(|(k, va)| va.iter().zip(&b[k]).map(|(x, y)| (x - y).abs())),
    )
}

#[test]
fn cache_gives_the_same_weights_as_recomputing() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let with = train(args(&data, &d.path().join("cached")), false, true).unwrap();
    assert!(with.cache_used);
    assert!(with.history[1].cached && !with.history[0].cached);
    let mut a = args(&data, &d.path().join("plain"));
    a.cache = CacheMode::Off;
    let without = train(a, false, true).unwrap();
    assert!(!without.cache_used && !without.history[1].cached);
    let diff = max_diff(
        &weights(&d.path().join("cached/weights/last.safetensors")),
        &weights(&d.path().join("plain/weights/last.safetensors")),
    );
    // f32 rows are copies of the very tensors the uncached run computes: bit-identical
    assert_eq!(diff, 0.0, "cache changed the weights by {diff}");
    assert_eq!(with.history.len(), without.history.len());
    for (x, y) in with.history.iter().zip(&without.history) {
        assert!((x.train_loss - y.train_loss).abs() < 1e-6 && x.val_acc == y.val_acc);
    }
}

fn faceattr(args: &[&str], env: Option<(&str, &str)>) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faceattr"));
    c.args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some((k, v)) = env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Epochs of the CLI runs: enough that a run is still going when the test acts on its first
/// checkpoint, even on a loaded machine (an epoch of this tiny set takes about 30 ms).
const KILL_EPOCHS: usize = 30;

fn cli_args(data: &Path, out: &Path) -> Vec<String> {
    let widths = WIDTHS.map(|w| w.to_string()).join(",");
    [
        "train",
        "--data",
        &data.join("train").display().to_string(),
        "--valid",
        &data.join("valid").display().to_string(),
        "--weights",
        "random",
        "--widths",
        &widths,
        "--out",
        &out.display().to_string(),
        "--epochs",
        &KILL_EPOCHS.to_string(),
        "--batch",
        "8",
        "--head",
        "8",
        "--patience",
        "0",
        "--seed",
        "5",
        "--input",
        "64x48",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let full = d.path().join("full");
    let a = cli_args(&data, &full);
    let st = faceattr(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
        .wait_with_output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    // 1. killed right after the epoch-1 checkpoint (abort: no cleanup at all)
    let cut = d.path().join("cut");
    let a = cli_args(&data, &cut);
    let st = faceattr(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        Some(("FACEATTR_TEST_ABORT_AFTER_EPOCH", "1")),
    )
    .wait()
    .unwrap();
    assert!(!st.success(), "the child was meant to die");
    let r = faceattr(&["train", "--resume", cut.to_str().unwrap()], None)
        .wait_with_output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let diff = max_diff(
        &weights(&full.join("weights/last.safetensors")),
        &weights(&cut.join("weights/last.safetensors")),
    );
    assert_eq!(diff, 0.0, "resumed run differs from the uninterrupted one");
    let hist = std::fs::read_to_string(cut.join("history.csv")).unwrap();
    assert_eq!(
        hist.lines().count(),
        KILL_EPOCHS + 1,
        "header + epochs:\n{hist}"
    );
    // epoch, losses and accuracies agree; timings naturally differ
    let figures = |h: &str| {
        h.lines()
            .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        figures(&hist),
        figures(&std::fs::read_to_string(full.join("history.csv")).unwrap())
    );

    // 2. SIGKILL at whatever moment the first checkpoint has appeared
    let killed = d.path().join("killed");
    let a = cli_args(&data, &killed);
    let mut child = faceattr(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let last = killed.join("weights/last.safetensors");
    let start = std::time::Instant::now();
    while !last.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(last.exists(), "no checkpoint appeared within 120 s");
    child
        .kill()
        .expect("the child is still running when its first checkpoint appears");
    let status = child.wait().unwrap();
    // Proof the kill happened mid-run: the child died of SIGKILL, and it had not finished.
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the child was not killed: {status:?}"
    );
    let epochs_done = std::fs::read_to_string(killed.join("history.csv"))
        .map(|h| h.lines().count().saturating_sub(1))
        .unwrap_or(0);
    assert!(
        epochs_done < KILL_EPOCHS,
        "the killed run had already finished"
    );
    let r = faceattr(&["train", "--resume", killed.to_str().unwrap()], None)
        .wait_with_output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let diff = max_diff(
        &weights(&full.join("weights/last.safetensors")),
        &weights(&last),
    );
    assert_eq!(
        diff, 0.0,
        "run killed and resumed differs from the uninterrupted one"
    );
}

#[test]
fn run_folder_has_everything_and_the_model_predicts() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    std::fs::write(
        data.join("train/warm/broken.jpg"),
        b"\xff\xd8\xff not a jpeg",
    )
    .unwrap();
    let out = d.path().join("run");
    let mut a = args(&data, &out);
    a.valid = None; // exercise --valid-fraction
    a.valid_fraction = 0.25;
    a.epochs = 2;
    let outcome = train(a, false, true).unwrap();
    assert_eq!(outcome.skipped, 1);
    for f in [
        "args.json",
        "history.csv",
        "curves.png",
        "summary.txt",
        "skipped.csv",
        "train.log",
        "weights/best.safetensors",
        "weights/last.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let skipped = std::fs::read_to_string(out.join("skipped.csv")).unwrap();
    assert!(
        skipped.lines().count() == 2 && skipped.contains("broken.jpg"),
        "{skipped}"
    );
    let png = image::open(out.join("curves.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1200, 480));
    let args: TrainArgs =
        serde_json::from_str(&std::fs::read_to_string(out.join("args.json")).unwrap()).unwrap();
    assert_eq!(args.valid_fraction, 0.25);
    assert!(
        std::fs::read_to_string(out.join("summary.txt"))
            .unwrap()
            .contains("block5_conv3")
    );

    let loaded = saved::load(
        &out.join("weights/best.safetensors"),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    assert_eq!(loaded.meta.spec.class_names, vec!["cool", "warm"]);
    assert_eq!(loaded.meta.spec.input_hw, (64, 48));
    assert_eq!(
        loaded.meta.spec.preprocessing,
        faceattr::preprocess::Preprocessing::Caffe
    );
    assert_eq!(loaded.meta.trained_layers[0], "block5_conv1");
    assert!(loaded.meta.data_fingerprint.is_some());

    let p = Command::new(env!("CARGO_BIN_EXE_faceattr"))
        .args([
            "predict",
            "--model",
            out.join("weights/best.safetensors").to_str().unwrap(),
            "--json",
            data.join("test").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(p.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 16);
    for l in &lines {
        let (c, w) = (
            l["probs"]["cool"].as_f64().unwrap(),
            l["probs"]["warm"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&c) && (0.0..=1.0).contains(&w));
        assert_eq!(l["label"], if c >= w { "cool" } else { "warm" });
    }
}

#[test]
fn non_finite_loss_stops_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let mut a = args(&data, &d.path().join("nan"));
    a.lr = 1e30;
    let e = train(a, false, true).unwrap_err().to_string();
    assert!(
        e.contains("the training loss became") && e.contains("--lr"),
        "{e}"
    );
}

#[test]
fn a_busy_run_folder_is_refused_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let out = d.path().join("busy");
    std::fs::create_dir_all(&out).unwrap();
    // Another process holds the folder: flock(1) on the lock file, closing its descriptor
    // before running `sleep` (-o), so killing flock releases the lock.
    let mut holder = Command::new("flock")
        .args([
            "-o",
            out.join(".faceattr.lock").to_str().unwrap(),
            "sleep",
            "120",
        ])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while faceattr::train::run_lock::acquire(&out).is_ok() {
        assert!(start.elapsed().as_secs() < 30, "flock never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut a = args(&data, &out);
    a.epochs = 1;
    let e = train(a.clone(), false, true).unwrap_err().to_string();
    assert!(e.contains("is in use by another faceattr run"), "{e}");
    let e = train(a.clone(), true, true).unwrap_err().to_string();
    assert!(e.contains("is in use by another faceattr run"), "{e}");
    assert!(!out.join("weights/last.safetensors").exists());
    holder.kill().unwrap();
    holder.wait().unwrap();
    // flock's forked child holds a copy of the descriptor until it closes it (-o) before
    // running `sleep`; on a loaded machine that can come after flock itself is gone
    let start = std::time::Instant::now();
    while faceattr::train::run_lock::acquire(&out).is_err() {
        assert!(
            start.elapsed().as_secs() < 30,
            "the lock was never released"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    train(a, false, true).unwrap();
    assert!(out.join("weights/last.safetensors").exists());
}

#[test]
fn an_existing_run_is_not_overwritten() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let mut a = args(&data, &d.path().join("r"));
    a.epochs = 1;
    train(a.clone(), false, true).unwrap();
    let before = std::fs::read(d.path().join("r/weights/last.safetensors")).unwrap();
    let e = train(a, false, true).unwrap_err().to_string();
    assert!(
        e.contains("already holds a run") && e.contains("--resume"),
        "{e}"
    );
    assert_eq!(
        before,
        std::fs::read(d.path().join("r/weights/last.safetensors")).unwrap()
    );
}

#[test]
fn the_decoding_chosen_for_training_is_recorded_and_used_for_inference() {
    use faceattr::data::decode::Decoding;
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let mut a = args(&data, &d.path().join("k"));
    a.epochs = 1;
    a.decoding = Decoding::Keras;
    train(a, false, true).unwrap();
    let loaded = saved::load(
        &d.path().join("k/weights/last.safetensors"),
        &burn::tensor::Device::flex(),
    )
    .unwrap();
    assert_eq!(loaded.meta.spec.decoding, Decoding::Keras);
    let spec = faceattr::eval::predict::input_spec(&loaded.model);
    assert_eq!(spec.decoding, Decoding::Keras);
    let card = faceattr::eval::card::render(&loaded.meta, None, None);
    assert!(card.contains("as Keras' `load_img` does"), "{card}");
}

/// `cli_args` with `--epochs` set to `epochs`.
fn cli_args_epochs(data: &Path, out: &Path, epochs: usize) -> Vec<String> {
    let mut a = cli_args(data, out);
    let at = a.iter().position(|s| s == "--epochs").unwrap();
    a[at + 1] = epochs.to_string();
    a
}

/// Temporary files (`*.tmp*`) left in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
fn ctrl_c_stops_cleanly_and_says_how_to_resume() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let out = d.path().join("int");
    // many epochs: the run is still going when the signal lands
    let a = cli_args_epochs(&data, &out, 200);
    let child = faceattr(&a.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let last = out.join("weights/last.safetensors");
    let start = std::time::Instant::now();
    while !last.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(last.exists(), "no checkpoint appeared within 120 s");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let r = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted in epoch"), "{stderr}");
    assert!(
        stderr.contains(&format!("faceattr train --resume {}", out.display())),
        "{stderr}"
    );
    // nothing half-written: no temporary files, the checkpoint loads, the lock is free
    let leftovers = temporaries(&out.join("weights"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let done = saved::load(&last, &burn::tensor::Device::flex()).unwrap();
    assert!(done.training.is_some());
    assert!(faceattr::train::run_lock::acquire(&out).is_ok());
}

/// `faceattr ARGS` under a file-size limit of `kib` KiB, as a full disk behaves: writes past it
/// fail with EFBIG (SIGXFSZ ignored, as a full disk sends no signal).
fn faceattr_with_file_limit(args: &[&str], kib: u64) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_faceattr"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_while_checkpointing_keeps_the_last_good_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let out = d.path().join("full-disk");
    let a = cli_args_epochs(&data, &out, 1);
    let r = faceattr(&a.iter().map(String::as_str).collect::<Vec<_>>(), None)
        .wait_with_output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let last = out.join("weights/last.safetensors");
    let before = std::fs::read(&last).unwrap();
    let history = std::fs::read(out.join("history.csv")).unwrap();
    // room for everything but a whole checkpoint
    let kib = before.len() as u64 / 1024 - 1;
    let r = faceattr_with_file_limit(
        &[
            "train",
            "--resume",
            out.to_str().unwrap(),
            "--epochs-total",
            "2",
        ],
        kib,
    );
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "the write was meant to fail: {stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert!(stderr.contains("last.safetensors"), "{stderr}");
    assert_eq!(
        std::fs::read(&last).unwrap(),
        before,
        "the good checkpoint was replaced"
    );
    assert_eq!(std::fs::read(out.join("history.csv")).unwrap(), history);
    let leftovers = temporaries(&out.join("weights"));
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // with room again, the run resumes from the kept checkpoint
    let r = faceattr(
        &[
            "train",
            "--resume",
            out.to_str().unwrap(),
            "--epochs-total",
            "2",
        ],
        None,
    )
    .wait_with_output()
    .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn bn_recalibration_sets_the_moving_statistics_to_the_training_sets() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(&d.path().join("data"));
    let mut a = args(&data, &d.path().join("bn"));
    a.epochs = 2;
    a.bn_recalibrate = true;
    train(a, false, true).unwrap();
    let device = burn::tensor::Device::flex();
    let loaded = saved::load(&d.path().join("bn/weights/last.safetensors"), &device).unwrap();
    let model = &loaded.model;
    // the head's inputs for every training image, recomputed from the files
    let set = faceattr::data::LabeledSet::open(&data.join("train")).unwrap();
    let spec = faceattr::eval::predict::input_spec(model);
    let images: Vec<_> = set
        .samples
        .iter()
        .map(|s| spec.load(&s.path).unwrap())
        .collect();
    let prefix = model.frozen_prefix(spec.batch(&images, &device));
    let h = burn_values(&model.head.bn_inputs(model.features_from_prefix(prefix)));
    let n = model.head.hidden();
    let rows = h.len() / n;
    let mean: Vec<f64> = (0..n)
        .map(|j| h.iter().skip(j).step_by(n).map(|&v| v as f64).sum::<f64>() / rows as f64)
        .collect();
    let unbiased = model.spec.conventions.bn_unbiased_moving_variance();
    let var: Vec<f64> = (0..n)
        .map(|j| {
            let ss: f64 = h
                .iter()
                .skip(j)
                .step_by(n)
                .map(|&v| (v as f64 - mean[j]).powi(2))
                .sum();
            ss / if unbiased { rows - 1 } else { rows } as f64
        })
        .collect();
    let t = model.head.named_tensors();
    let get = |name: &str| t.iter().find(|(k, _)| k == name).unwrap().1.data.clone();
    let (mm, mv) = (
        get("batch_normalization.moving_mean"),
        get("batch_normalization.moving_variance"),
    );
    for j in 0..n {
        assert!(
            (mm[j] as f64 - mean[j]).abs() < 1e-4,
            "mean {j}: {} vs {}",
            mm[j],
            mean[j]
        );
        assert!(
            (mv[j] as f64 - var[j]).abs() < 1e-4 * (1.0 + var[j]),
            "var {j}: {} vs {}",
            mv[j],
            var[j]
        );
    }
}

fn burn_values(t: &burn::tensor::Tensor<2>) -> Vec<f32> {
    faceattr::model::layers::values(t)
}
