//! Downloading a known weight file into the cache: progress bar, checksum while streaming,
//! and a `.part` file that only becomes the real name once complete, verified and fsynced.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use md5::Md5;
use sha2::{Digest, Sha256};

use super::registry::{Checksum, KnownWeights};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "cannot download {url}: {reason} (offline? put the file in {dir} yourself, or pass --url with a mirror)"
    )]
    Network {
        url: String,
        dir: PathBuf,
        reason: String,
    },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error(
        "checksum mismatch for {file}: expected {expected}, got {found}; the download was discarded"
    )]
    Checksum {
        file: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The default cache folder: `$FACEATTR_CACHE`, else the user's cache dir + `faceattr/weights`.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FACEATTR_CACHE") {
        return PathBuf::from(d).join("weights");
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("faceattr")
        .join("weights")
}

struct Hashers {
    sha: Sha256,
    md5: Md5,
}

impl Hashers {
    fn new() -> Self {
        Hashers {
            sha: Sha256::new(),
            md5: Md5::new(),
        }
    }
    fn update(&mut self, b: &[u8]) {
        self.sha.update(b);
        self.md5.update(b);
    }
    /// Checks the digests against `want`; returns (ok, expected, found) for messages.
    fn verify(self, want: &Checksum) -> (bool, String, String) {
        let sha = hex(&self.sha.finalize());
        let md5 = hex(&self.md5.finalize());
        match want {
            Checksum::Sha256(h) => (
                sha.eq_ignore_ascii_case(h),
                format!("sha256 {h}"),
                format!("sha256 {sha}"),
            ),
            Checksum::Sha256Prefix(p) => (
                sha.to_ascii_lowercase()
                    .starts_with(&p.to_ascii_lowercase()),
                format!("sha256 starting {p}"),
                format!("sha256 {sha}"),
            ),
            Checksum::Md5(h) => (
                md5.eq_ignore_ascii_case(h),
                format!("md5 {h}"),
                format!("md5 {md5}"),
            ),
            Checksum::Unrecorded => (true, "nothing recorded".into(), format!("sha256 {sha}")),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Verifies a file already on disk.
pub fn verify_file(path: &Path, want: &Checksum) -> Result<bool, FetchError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Hashers::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.verify(want).0)
}

/// Returns the cached file if it verifies, else downloads it (from `url_override` if given).
pub fn fetch(
    entry: &KnownWeights,
    dir: &Path,
    url_override: Option<&str>,
    progress: bool,
) -> Result<PathBuf, FetchError> {
    let target = dir.join(&entry.file_name);
    if target.exists() && verify_file(&target, &entry.checksum)? {
        return Ok(target);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let url = url_override.unwrap_or(&entry.url).to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(&url).call().map_err(|e| FetchError::Network {
        url: url.clone(),
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FetchError::Http { url, status });
    }
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or(entry.size);
    let bar = if progress {
        crate::progress::bytes_bar(total, &entry.file_name)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let part = dir.join(format!("{}.part", entry.file_name));
    let mut out = std::fs::File::create(&part).map_err(io(&part))?;
    let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut hashers = Hashers::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| FetchError::Network {
            url: url.clone(),
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        hashers.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io(&part))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    out.sync_all().map_err(io(&part))?;
    drop(out);
    let (ok, expected, found) = hashers.verify(&entry.checksum);
    if !ok {
        let _ = std::fs::remove_file(&part);
        return Err(FetchError::Checksum {
            file: target,
            expected,
            found,
        });
    }
    crate::atomic_file::commit(&part, &target).map_err(io(&target))?;
    Ok(target)
}
