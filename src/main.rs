//! The `faceattr` binary: parse, dispatch, and turn any error into one clear message.

use clap::Parser;

/// mimalloc keeps freed pages for reuse: every batch allocates and frees the same large
/// buffers, and glibc's allocator hands them back to the system and faults them in again
/// (measured: the block5 kernel gradient 65 ms with glibc, 27 ms with mimalloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells mimalloc never to purge freed memory: a forward pass frees and reallocates a few
/// hundred MB of activations per batch, and purged pages come back zeroed by the kernel
/// (`bench model`, W1 batch 12: 14.0 -> 16.8 images/s). The process keeps its peak memory until
/// it exits, which the README states.
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc 2's and 3's `mi_option_e` (libmimalloc-sys names
    // no constant for it); -1 means never purge
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: mi_option_set only stores an integer option; it may be called at any time
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// `--backend cuda` with cuDNN outside the dynamic loader's path (a pip `nvidia-*` package,
/// say): restart once with its folder on `LD_LIBRARY_PATH`, because cuDNN opens its own
/// sub-libraries by name and only the loader's path, read at start-up, reaches them. When the
/// libraries are missing nothing happens here: the backend reports what is missing.
#[cfg(all(feature = "cuda", unix))]
fn put_cuda_libraries_on_loader_path() {
    use faceattr::gpu::libraries::{self, RESTARTED, SearchEnv};
    use std::os::unix::process::CommandExt;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if !libraries::asks_for_cuda(&args) || std::env::var_os(RESTARTED).is_some() {
        return;
    }
    let env = SearchEnv::from_process();
    let Ok(found) = libraries::find_all(&env) else {
        return;
    };
    let Some(path) = libraries::loader_path_with(&found, &env) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(&args[1..])
        .env("LD_LIBRARY_PATH", path)
        .env(RESTARTED, "1")
        .exec();
    eprintln!("warning: could not restart with the CUDA libraries on LD_LIBRARY_PATH: {err}");
}

#[cfg(not(all(feature = "cuda", unix)))]
fn put_cuda_libraries_on_loader_path() {}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    put_cuda_libraries_on_loader_path();
    let cli = faceattr::cli::Cli::parse();
    match faceattr::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            use faceattr::train::trainer::TrainError;
            match e.downcast_ref::<TrainError>() {
                Some(TrainError::Interrupted { .. }) => {
                    std::process::ExitCode::from(faceattr::train::interrupt::EXIT_CODE)
                }
                _ => std::process::ExitCode::FAILURE,
            }
        }
    }
}
