//! One process per run folder. The feature cache is a memory-mapped file in the run folder:
//! a second `train` on the same `--out`, or a `--resume` of a run still going, would truncate
//! it under the first (SIGBUS) and delete it on exit. So a run holds an exclusive lock on
//! `<run>/.faceattr.lock` (an advisory `flock`, released by the OS when the process ends,
//! even by a kill) for as long as it uses the folder; the file names the holder's process id.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while a run uses its folder; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir} is in use by another faceattr run{holder}; wait for it to finish, or choose another --out"
    )]
    Busy { dir: PathBuf, holder: String },
    #[error("{path}: cannot lock the run folder: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Locks `dir` (which must exist) for this process, or says who holds it.
pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
    let path = dir.join(".faceattr.lock");
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            Ok(RunLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            Err(LockError::Busy {
                dir: dir.to_path_buf(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (process {pid})")
                },
            })
        }
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path()).unwrap();
        let err = acquire(d.path()).unwrap_err().to_string();
        assert!(err.contains("is in use by another faceattr run"), "{err}");
        assert!(
            err.contains(&format!("(process {})", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(acquire(d.path()).is_ok());
    }
}
