//! `--backend cuda` on a machine without a GPU (CI, this project's workstations): a clear error
//! that names what is missing and how to get it, never a panic. On a machine with a GPU these
//! tests say so and stop; `scripts/gpu-check.sh` runs the parity tests on the GPU instead.

use std::process::Command;

/// Whether this machine can open a GPU (then the no-GPU errors cannot be seen here).
fn gpu_present() -> bool {
    let present = faceattr::gpu::open(0, Default::default()).is_ok();
    if present {
        eprintln!("skipped: this machine has a working GPU; scripts/gpu-check.sh tests it");
    }
    present
}

fn faceattr(args: &[&str], env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_faceattr"));
    c.args(args).env_remove("FACEATTR_CUDA_LIBS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("faceattr runs")
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_naming_the_library() {
    if gpu_present() {
        return;
    }
    let out = faceattr(
        &["bench", "model", "--backend", "cuda", "--only", "w1_b12"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: backend 'Cuda' could not start a device: "),
        "{err}"
    );
    // whichever is missing here: the driver's library, cuDNN, or the device itself
    assert!(
        err.contains("libcuda") || err.contains("libcudnn") || err.contains("CUDA driver"),
        "{err}"
    );
    assert!(err.contains("--backend flex"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_found_library_that_does_not_load_is_named_with_the_loaders_reason() {
    if gpu_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["libcuda.so.1", "libcudnn.so.9"] {
        std::fs::write(dir.path().join(name), b"not a library").unwrap();
    }
    let out = faceattr(
        &["bench", "model", "--backend=cuda", "--only", "w1_b12"],
        &[("FACEATTR_CUDA_LIBS", dir.path())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // the binary restarted with the folder on the loader's path, so the system's libcuda (if
    // any) may load first; otherwise our broken copy is named with dlopen's reason
    if err.contains("/libcuda.so.1 but does not load") {
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        assert!(
            err.contains("file too short") || err.contains("invalid ELF"),
            "{err}"
        );
    } else {
        assert!(err.contains("could not start a device"), "{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}
