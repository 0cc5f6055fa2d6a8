//! Files replaced whole or not at all: a crash, a kill or a full disk at any moment leaves
//! either the previous file or the new one, never a mix, and no temporary file behind.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path`: a temporary file in the same folder, fsync, rename, fsync of the
/// folder.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, true)
}

/// As [`write`] without the fsyncs: whole or absent after a crash of the process or a full
/// disk, but not promised to survive a power cut. For many small files that are cheap to
/// redo (face crops), where an fsync each would dominate.
pub fn write_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, false)
}

fn replace(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        if sync { f.sync_all() } else { Ok(()) }
    });
    match written {
        Ok(()) if sync => commit(&tmp, path),
        Ok(()) => std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        }),
        Err(e) => {
            // a full disk: the old file stays, and no partial temporary file is left behind
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Moves a complete, fsynced `tmp` over `path` and fsyncs the folder, so the new name
/// survives a power cut. On failure `tmp` is removed.
pub fn commit(tmp: &Path, path: &Path) -> std::io::Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(path.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        super::write(&p, b"old").unwrap();
        super::write(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // a target that cannot be written (a folder in the way) fails, removing its temporary
        let blocked = d.path().join("dir");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"x").unwrap();
        assert!(super::write(&blocked, b"data").is_err());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
