//! Finding NVIDIA's shared libraries without a CUDA toolkit: the driver's `libcuda`, and
//! `libcudnn` (with the sub-libraries it opens itself) from the library path, a CUDA install,
//! or a pip-installed `nvidia-*` package such as PyTorch brings.
//!
//! The search is plain file lookups, so it is tested here without a GPU. Loading happens in
//! [`super::cuda`]; when a library lies outside the dynamic loader's path, the binary restarts
//! itself once with that folder on `LD_LIBRARY_PATH` ([`loader_path_with`]), because cuDNN 9
//! opens its own sub-libraries (`libcudnn_cnn.so.9`, …) by name and only the loader's path
//! reaches them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// One library faceattr's CUDA path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Library {
    /// The file name's stem: `libcudnn` for `libcudnn.so.9`.
    pub stem: &'static str,
    /// What it is for, in the error message.
    pub role: &'static str,
    /// How to get it, in the error message.
    pub install: &'static str,
}

/// The CUDA driver, installed with NVIDIA's kernel driver (never from pip).
pub const DRIVER: Library = Library {
    stem: "libcuda",
    role: "the NVIDIA driver's CUDA library",
    install: "install the NVIDIA driver for the GPU (it provides libcuda.so.1; in a container, \
              run it with the NVIDIA container toolkit, e.g. `docker run --gpus all`)",
};

/// cuDNN 9, for the convolutions and pooling.
pub const CUDNN: Library = Library {
    stem: "libcudnn",
    role: "cuDNN 9, which runs the convolutions",
    install: "`pip install nvidia-cudnn-cu12` (PyTorch installs it too), or NVIDIA's \
              libcudnn9-cuda-12 package; or point FACEATTR_CUDA_LIBS at the folder holding \
              libcudnn.so.9",
};

/// The libraries the CUDA path loads, in the order they are checked.
pub const NEEDED: [Library; 2] = [DRIVER, CUDNN];

/// Where a library was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub library: Library,
    pub path: PathBuf,
}

impl Found {
    pub fn folder(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }
}

/// The environment the search reads, taken apart so tests can give their own.
#[derive(Debug, Clone, Default)]
pub struct SearchEnv {
    /// `FACEATTR_CUDA_LIBS`: folders searched first (a path list).
    pub explicit: Option<OsString>,
    /// `LD_LIBRARY_PATH`.
    pub loader_path: Option<OsString>,
    /// `CUDA_HOME`, `CUDA_PATH`.
    pub cuda_homes: Vec<PathBuf>,
    /// Python environments whose `site-packages` may hold `nvidia/*/lib`: `VIRTUAL_ENV`,
    /// `CONDA_PREFIX`, the user's `~/.local`, then the system prefixes.
    pub python_prefixes: Vec<PathBuf>,
    /// The system's library folders.
    pub system: Vec<PathBuf>,
}

impl SearchEnv {
    /// This process's environment.
    pub fn from_process() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let mut python_prefixes: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
            .iter()
            .filter_map(|k| var(k).map(PathBuf::from))
            .collect();
        if let Some(home) = dirs::home_dir() {
            python_prefixes.push(home.join(".local"));
        }
        python_prefixes.extend(
            ["/usr/local", "/usr", "/opt/conda"]
                .iter()
                .map(PathBuf::from),
        );
        SearchEnv {
            explicit: var("FACEATTR_CUDA_LIBS"),
            loader_path: var("LD_LIBRARY_PATH"),
            cuda_homes: ["CUDA_HOME", "CUDA_PATH"]
                .iter()
                .filter_map(|k| var(k).map(PathBuf::from))
                .chain(std::iter::once(PathBuf::from("/usr/local/cuda")))
                .collect(),
            python_prefixes,
            system: [
                "/usr/lib/x86_64-linux-gnu",
                "/usr/lib/aarch64-linux-gnu",
                "/usr/lib64",
                "/usr/lib",
                "/usr/local/lib",
                "/usr/lib/wsl/lib",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
        }
    }

    /// Every folder searched, in order, each once.
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let split = |v: &Option<OsString>| -> Vec<PathBuf> {
            v.as_ref()
                .map(|v| std::env::split_paths(v).collect())
                .unwrap_or_default()
        };
        out.extend(split(&self.explicit));
        out.extend(split(&self.loader_path));
        for home in &self.cuda_homes {
            out.push(home.join("lib64"));
            out.push(home.join("lib"));
        }
        for prefix in &self.python_prefixes {
            out.extend(pip_nvidia_folders(prefix));
        }
        out.extend(self.system.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| !p.as_os_str().is_empty() && seen.insert(p.clone()));
        out
    }
}

/// `<prefix>/lib/python3.*/{site,dist}-packages/nvidia/*/lib`, where pip's `nvidia-*`
/// packages put their libraries (`nvidia/cudnn/lib/libcudnn.so.9`, and for CUDA 13's
/// packages `nvidia/cu13/lib`), sorted so the order does not depend on the file system.
fn pip_nvidia_folders(prefix: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for lib in ["lib", "lib64"] {
        for python in sorted_entries(&prefix.join(lib)) {
            let is_python = python
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"));
            if !is_python {
                continue;
            }
            for packages in ["site-packages", "dist-packages"] {
                for package in sorted_entries(&python.join(packages).join("nvidia")) {
                    let lib = package.join("lib");
                    if lib.is_dir() {
                        out.push(lib);
                    }
                }
            }
        }
    }
    out
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The version suffix of `name` if it is `<stem>.so` or `<stem>.so.<digits…>`: `Some("")`,
/// `Some("9")`, `Some("9.1.0")`.
fn so_version<'a>(name: &'a str, stem: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(stem)?.strip_prefix(".so")?;
    if rest.is_empty() {
        return Some("");
    }
    let v = rest.strip_prefix('.')?;
    v.split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .then_some(v)
}

/// The library in `folder`, if there: the name the loader asks for (`libcudnn.so.9`, the
/// shortest versioned name, which the package's symlink provides) before the bare `.so`
/// development link.
pub fn find_in(library: Library, folder: &Path) -> Option<PathBuf> {
    let mut best: Option<(usize, String)> = None;
    for entry in std::fs::read_dir(folder).ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(version) = so_version(name, library.stem) else {
            continue;
        };
        // versioned names first, the shortest (the soname) first, then the bare .so
        let rank = if version.is_empty() {
            usize::MAX
        } else {
            version.len()
        };
        if best.as_ref().is_none_or(|(r, n)| (rank, name) < (*r, n)) {
            best = Some((rank, name.to_string()));
        }
    }
    best.map(|(_, name)| folder.join(name))
}

/// The first folder, in search order, that holds `library`.
pub fn find(library: Library, env: &SearchEnv) -> Option<Found> {
    env.folders()
        .iter()
        .find_map(|f| find_in(library, f))
        .map(|path| Found { library, path })
}

/// The error for a library that is nowhere: what it is, how to get it, where we looked.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error(
    "{} ({}) was not found: {}. Searched FACEATTR_CUDA_LIBS, LD_LIBRARY_PATH, the CUDA install, \
     pip's nvidia-* packages and the system's library folders ({} folders, first: {})",
    .library.stem, .library.role, .library.install, .searched.len(),
    .searched.first().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into())
)]
pub struct Missing {
    pub library: Library,
    pub searched: Vec<PathBuf>,
}

/// Every needed library, or the first missing one.
pub fn find_all(env: &SearchEnv) -> Result<Vec<Found>, Missing> {
    NEEDED
        .iter()
        .map(|&library| {
            find(library, env).ok_or_else(|| Missing {
                library,
                searched: env.folders(),
            })
        })
        .collect()
}

/// The `LD_LIBRARY_PATH` that puts every found library's folder on the loader's path, or
/// `None` when the current one already does (or the folder is one the loader searches
/// anyway). The system folders are left out: the loader's cache covers them.
pub fn loader_path_with(found: &[Found], env: &SearchEnv) -> Option<OsString> {
    let current: Vec<PathBuf> = env
        .loader_path
        .as_ref()
        .map(|v| std::env::split_paths(v).collect())
        .unwrap_or_default();
    let mut added: Vec<PathBuf> = Vec::new();
    for f in found {
        let folder = f.folder().to_path_buf();
        if env.system.contains(&folder) || current.contains(&folder) || added.contains(&folder) {
            continue;
        }
        added.push(folder);
    }
    if added.is_empty() {
        return None;
    }
    std::env::join_paths(added.into_iter().chain(current)).ok()
}

/// Whether command-line `args` ask for the CUDA backend (`--backend cuda` or
/// `--backend=cuda`), which is when the binary puts the libraries on the loader's path.
pub fn asks_for_cuda(args: &[OsString]) -> bool {
    args.iter().any(|a| a == "--backend=cuda")
        || args
            .windows(2)
            .any(|w| w[0] == "--backend" && w[1] == "cuda")
}

/// Set in the environment of the restarted process, so it restarts at most once.
pub const RESTARTED: &str = "FACEATTR_CUDA_RESTARTED";

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    fn bare_env(root: &Path) -> SearchEnv {
        SearchEnv {
            system: vec![root.join("system")],
            ..Default::default()
        }
    }

    #[test]
    fn cuda_is_asked_for_in_both_spellings_only_as_the_backend() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(asks_for_cuda(&args(&[
            "faceattr",
            "train",
            "--backend",
            "cuda"
        ])));
        assert!(asks_for_cuda(&args(&[
            "faceattr",
            "bench",
            "model",
            "--backend=cuda"
        ])));
        assert!(!asks_for_cuda(&args(&[
            "faceattr",
            "predict",
            "cuda",
            "--backend",
            "flex"
        ])));
        assert!(!asks_for_cuda(&args(&["faceattr", "train", "--backend"])));
    }

    #[test]
    fn version_suffixes_are_read_and_lookalikes_refused() {
        assert_eq!(so_version("libcudnn.so.9", "libcudnn"), Some("9"));
        assert_eq!(so_version("libcudnn.so.9.1.0", "libcudnn"), Some("9.1.0"));
        assert_eq!(so_version("libcudnn.so", "libcudnn"), Some(""));
        assert_eq!(so_version("libcudnn_cnn.so.9", "libcudnn"), None);
        assert_eq!(so_version("libcudnn.so.9.bak", "libcudnn"), None);
        assert_eq!(so_version("libcuda.so.1", "libcudnn"), None);
        assert_eq!(so_version("libcudart.so.12", "libcuda"), None);
    }

    #[test]
    fn the_soname_is_preferred_over_the_full_version_and_the_dev_link() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libcudnn.so",
            "libcudnn.so.9.1.0",
            "libcudnn.so.9",
            "libcudnn_ops.so.9",
        ] {
            touch(&dir.path().join(name));
        }
        assert_eq!(
            find_in(CUDNN, dir.path()),
            Some(dir.path().join("libcudnn.so.9"))
        );
        assert_eq!(find_in(DRIVER, dir.path()), None);
    }

    #[test]
    fn pip_packages_are_found_in_a_virtual_environment() {
        let root = tempfile::tempdir().unwrap();
        let venv = root.path().join("venv");
        let cudnn = venv.join("lib/python3.12/site-packages/nvidia/cudnn/lib/libcudnn.so.9");
        touch(&cudnn);
        touch(&root.path().join("system/libcuda.so.1"));
        let env = SearchEnv {
            python_prefixes: vec![venv],
            ..bare_env(root.path())
        };
        let found = find_all(&env).unwrap();
        assert_eq!(found[0].path, root.path().join("system/libcuda.so.1"));
        assert_eq!(found[1].path, cudnn);
        // the pip folder must go on the loader's path; the system folder need not
        let path = loader_path_with(&found, &env).unwrap();
        assert_eq!(
            std::env::split_paths(&path).collect::<Vec<_>>(),
            vec![cudnn.parent().unwrap().to_path_buf()]
        );
        // once it is there, nothing to do
        let env = SearchEnv {
            loader_path: Some(path),
            ..env
        };
        assert_eq!(loader_path_with(&found, &env), None);
    }

    #[test]
    fn the_explicit_folder_comes_first_and_the_loader_path_is_kept_behind_it() {
        let root = tempfile::tempdir().unwrap();
        let mine = root.path().join("mine");
        let other = root.path().join("other");
        touch(&mine.join("libcudnn.so.9"));
        touch(&other.join("libcudnn.so.9"));
        touch(&root.path().join("system/libcuda.so.1"));
        let env = SearchEnv {
            explicit: Some(mine.clone().into_os_string()),
            loader_path: Some(other.clone().into_os_string()),
            ..bare_env(root.path())
        };
        let found = find_all(&env).unwrap();
        assert_eq!(found[1].path, mine.join("libcudnn.so.9"));
        let path = loader_path_with(&found, &env).unwrap();
        assert_eq!(
            std::env::split_paths(&path).collect::<Vec<_>>(),
            vec![mine, other]
        );
    }

    #[test]
    fn a_missing_library_names_itself_and_how_to_get_it() {
        let root = tempfile::tempdir().unwrap();
        touch(&root.path().join("system/libcuda.so.1"));
        let err = find_all(&bare_env(root.path())).unwrap_err();
        assert_eq!(err.library, CUDNN);
        let msg = err.to_string();
        assert!(msg.starts_with("libcudnn (cuDNN 9"), "{msg}");
        assert!(msg.contains("pip install nvidia-cudnn-cu12"), "{msg}");
        assert!(msg.contains("1 folders"), "{msg}");
        let err = find_all(&bare_env(&root.path().join("nowhere"))).unwrap_err();
        assert_eq!(err.library, DRIVER);
        assert!(err.to_string().contains("NVIDIA driver"), "{err}");
    }
}
