//! The frozen-feature cache. When everything before the first trainable layer is frozen and
//! inputs are not augmented, the frozen prefix's output for an image never changes, so it is
//! computed once (block4_pool: 512 x 13 x 11 at the reference size) and reused in every later
//! epoch and validation pass. Rows live in memory when they fit the budget, else in a
//! memory-mapped file in the run folder; f32 rows are exact, f16 rows halve the size.

use std::path::{Path, PathBuf};

use half::f16;
use memmap2::MmapMut;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheDtype {
    #[default]
    F32,
    F16,
}

impl CacheDtype {
    fn size(self) -> usize {
        match self {
            CacheDtype::F32 => 4,
            CacheDtype::F16 => 2,
        }
    }
}

enum Storage {
    Memory(Vec<u8>),
    Mapped { map: MmapMut, path: PathBuf },
}

pub struct FeatureCache {
    row: usize,
    dtype: CacheDtype,
    storage: Storage,
    filled: Vec<bool>,
}

impl FeatureCache {
    /// A cache for `rows` rows of `row` values; in memory if it fits `memory_budget` bytes,
    /// else in a memory-mapped file at `file`.
    pub fn new(
        rows: usize,
        row: usize,
        dtype: CacheDtype,
        memory_budget: u64,
        file: &Path,
    ) -> std::io::Result<Self> {
        let bytes = rows * row * dtype.size();
        let storage = if bytes as u64 <= memory_budget {
            Storage::Memory(vec![0u8; bytes])
        } else {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(file)?;
            f.set_len(bytes.max(1) as u64)?;
            // SAFETY: the file was just created by us and is only accessed through this map.
            let map = unsafe { MmapMut::map_mut(&f)? };
            Storage::Mapped {
                map,
                path: file.to_path_buf(),
            }
        };
        Ok(FeatureCache {
            row,
            dtype,
            storage,
            filled: vec![false; rows],
        })
    }

    pub fn is_on_disk(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }

    pub fn size_bytes(&self) -> usize {
        self.filled.len() * self.row * self.dtype.size()
    }

    pub fn has(&self, i: usize) -> bool {
        self.filled.get(i).copied().unwrap_or(false)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Storage::Memory(v) => v,
            Storage::Mapped { map, .. } => map,
        }
    }

    fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Memory(v) => v,
            Storage::Mapped { map, .. } => map,
        }
    }

    pub fn put(&mut self, i: usize, values: &[f32]) {
        debug_assert_eq!(values.len(), self.row);
        let (row, dtype) = (self.row, self.dtype);
        let start = i * row * dtype.size();
        let dst = &mut self.bytes_mut()[start..start + row * dtype.size()];
        match dtype {
            CacheDtype::F32 => dst.copy_from_slice(bytemuck::cast_slice(values)),
            CacheDtype::F16 => {
                for (d, v) in dst.chunks_exact_mut(2).zip(values) {
                    d.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
                }
            }
        }
        self.filled[i] = true;
    }

    pub fn get(&self, i: usize, out: &mut [f32]) {
        let start = i * self.row * self.dtype.size();
        let src = &self.bytes()[start..start + self.row * self.dtype.size()];
        match self.dtype {
            CacheDtype::F32 => {
                for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            CacheDtype::F16 => {
                for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }
}

impl Drop for FeatureCache {
    fn drop(&mut self) {
        if let Storage::Mapped { path, .. } = &self.storage {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_in_memory_and_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let row: Vec<f32> = (0..10).map(|v| v as f32 * 0.37 - 1.0).collect();
        for budget in [u64::MAX, 0] {
            let mut c =
                FeatureCache::new(3, 10, CacheDtype::F32, budget, &d.path().join("cache.bin"))
                    .unwrap();
            assert_eq!(c.is_on_disk(), budget == 0);
            c.put(1, &row);
            assert!(c.has(1) && !c.has(0));
            let mut out = vec![0.0; 10];
            c.get(1, &mut out);
            assert_eq!(out, row);
        }
        let mut c =
            FeatureCache::new(1, 10, CacheDtype::F16, u64::MAX, &d.path().join("x")).unwrap();
        c.put(0, &row);
        let mut out = vec![0.0; 10];
        c.get(0, &mut out);
        for (a, b) in out.iter().zip(&row) {
            assert!((a - b).abs() <= b.abs() * 1e-3 + 1e-3);
        }
    }
}
