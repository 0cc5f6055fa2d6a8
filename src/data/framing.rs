//! A dataset says how its images are framed in `faceattr-dataset.json`, written by the commands
//! that make framed sets (`data celeba`, `faces align`). Training reads it and records the
//! framing in the model, so that `predict --faces auto` frames new photos as the training
//! images were. A set without the file is whole images.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DataError;
use crate::preprocess::Framing;

pub const MARKER: &str = "faceattr-dataset.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub framing: Framing,
    /// Height and width of the images, when they all have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_hw: Option<(usize, usize)>,
    /// The command that made the set.
    pub made_by: String,
    /// Anything else worth keeping (detector settings, source), free-form.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// Writes the marker into `dir`.
pub fn write(dir: &Path, info: &DatasetInfo) -> Result<(), DataError> {
    let path = dir.join(MARKER);
    let text = serde_json::to_string_pretty(info).map_err(|e| DataError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    crate::atomic_file::write(&path, text.as_bytes())
        .map_err(|source| DataError::Io { path, source })
}

/// Where the marker of a dataset would be: beside a manifest; in a class-folder root or, for
/// the `train/`, `valid/` folders of a split, in the folder above.
fn candidates(data: &Path) -> Vec<PathBuf> {
    if data.is_dir() {
        let mut v = vec![data.join(MARKER)];
        if let Some(parent) = data.parent() {
            v.push(parent.join(MARKER));
        }
        v
    } else {
        vec![data.parent().unwrap_or(Path::new(".")).join(MARKER)]
    }
}

/// The dataset's own description, if it has one. A marker that exists but cannot be read is
/// an error naming it (it would otherwise silently change how the model frames photos).
pub fn read(data: &Path) -> Result<Option<(PathBuf, DatasetInfo)>, DataError> {
    for path in candidates(data) {
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let info: DatasetInfo = serde_json::from_str(&text).map_err(|e| DataError::Invalid {
            path: path.clone(),
            reason: format!("not a faceattr dataset description: {e}"),
        })?;
        return Ok(Some((path, info)));
    }
    Ok(None)
}

/// How the dataset at `data` is framed: its marker's word, else whole images.
pub fn framing_of(data: &Path) -> Result<Framing, DataError> {
    Ok(read(data)?.map_or(Framing::Whole, |(_, i)| i.framing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_found_beside_manifests_and_above_split_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("train/male")).expect("mkdir");
        std::fs::write(root.join("train.csv"), "path,label\n").expect("write");
        assert_eq!(
            framing_of(&root.join("train.csv")).expect("read"),
            Framing::Whole
        );
        let info = DatasetInfo {
            framing: Framing::CelebaAligned,
            size_hw: Some((218, 178)),
            made_by: "test".into(),
            details: serde_json::Value::Null,
        };
        write(root, &info).expect("write marker");
        assert_eq!(
            read(&root.join("train.csv")).expect("read").map(|r| r.1),
            Some(info)
        );
        assert_eq!(
            framing_of(&root.join("train")).expect("read"),
            Framing::CelebaAligned
        );
        assert_eq!(framing_of(root).expect("read"), Framing::CelebaAligned);
    }

    #[test]
    fn a_damaged_marker_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MARKER), "{\"framing\": \"sideways\"}").expect("write");
        let e = framing_of(dir.path()).expect_err("must fail").to_string();
        assert!(e.contains(MARKER) && e.contains("sideways"), "{e}");
    }
}
