//! PyTorch `.pth` checkpoints, in both formats `torch.save` has used:
//! - the zip format (PyTorch >= 1.6): `<name>/data.pkl` plus one file per storage in `<name>/data/`;
//! - the legacy stream (torchvision's 2017 `vgg16-397923af.pth`): magic number, protocol,
//!   sys_info, the pickled state dict, the sorted storage keys, then each storage as an int64
//!   element count followed by its raw little-endian bytes.
//!
//! The pickle is read by [`super::pickle`], which never executes anything.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use super::pickle::{self, TensorRef, Value};
use super::{NamedTensor, WeightFormat, WeightSet, WeightsError, canonical_from_torch};
use crate::preprocess::Preprocessing;

const FORMAT: &str = "PyTorch .pth";
/// The first pickle of a legacy file: LONG1 of the magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC_PICKLE: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

pub fn is_legacy_header(head: &[u8]) -> bool {
    head.len() >= LEGACY_MAGIC_PICKLE.len() && head.starts_with(LEGACY_MAGIC_PICKLE)
}

pub fn load(path: &Path) -> Result<WeightSet, WeightsError> {
    let raw = load_raw(path)?;
    Ok(WeightSet {
        origin: path.to_path_buf(),
        format: WeightFormat::TorchPth,
        preprocessing: Preprocessing::Torch,
        tensors: canonical_from_torch(raw),
    })
}

/// Every floating-point tensor of the state dict under its original key.
pub fn load_raw(path: &Path) -> Result<BTreeMap<String, NamedTensor>, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| WeightsError::io(path, e))?;
    if bytes.starts_with(b"PK\x03\x04") {
        load_zip(path, &bytes)
    } else if is_legacy_header(&bytes) {
        load_legacy(path, &bytes)
    } else {
        Err(WeightsError::malformed(
            path,
            FORMAT,
            "neither a zip archive nor a legacy torch.save stream",
        ))
    }
}

fn pickle_error(path: &Path, e: String) -> WeightsError {
    match e.strip_prefix("UNSAFE:") {
        Some(what) => WeightsError::UnsafePickle {
            path: path.to_path_buf(),
            what: what.to_string(),
        },
        None => WeightsError::malformed(path, FORMAT, e),
    }
}

/// A storage's element type, from its pickled class name.
#[derive(Clone, Copy)]
enum StorageType {
    F32,
    F64,
    F16,
    Bf16,
    I64,
    Other(usize),
}

impl StorageType {
    fn from_name(name: &str) -> StorageType {
        match name {
            "FloatStorage" => StorageType::F32,
            "DoubleStorage" => StorageType::F64,
            "HalfStorage" => StorageType::F16,
            "BFloat16Storage" => StorageType::Bf16,
            "LongStorage" => StorageType::I64,
            "IntStorage" => StorageType::Other(4),
            _ => StorageType::Other(1),
        }
    }
    fn size(self) -> usize {
        match self {
            StorageType::F32 => 4,
            StorageType::F64 | StorageType::I64 => 8,
            StorageType::F16 | StorageType::Bf16 => 2,
            StorageType::Other(n) => n,
        }
    }
    fn is_float(self) -> bool {
        !matches!(self, StorageType::I64 | StorageType::Other(_))
    }
    fn read(self, b: &[u8]) -> f32 {
        match self {
            StorageType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            StorageType::F64 => {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }
            StorageType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            StorageType::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            _ => 0.0,
        }
    }
}

/// (storage key, element type, element count) from a persistent id
/// `('storage', <class>, key, location, numel[, view])`.
fn storage_of(pid: &Value) -> Result<(String, StorageType, usize), String> {
    let Value::Tuple(items) = pid else {
        return Err(format!("unexpected persistent id {}", pickle::brief(pid)));
    };
    match items.as_slice() {
        [
            Value::Str(kind),
            Value::Global(_, class),
            Value::Str(key),
            _loc,
            Value::Int(numel),
            ..,
        ] if kind == "storage" && *numel >= 0 => {
            Ok((key.clone(), StorageType::from_name(class), *numel as usize))
        }
        _ => Err(format!("unexpected persistent id {}", pickle::brief(pid))),
    }
}

/// Walks the unpickled state dict and materialises each float tensor from its storage bytes.
fn collect(
    path: &Path,
    root: Value,
    storage_bytes: &dyn Fn(&str) -> Result<Vec<u8>, WeightsError>,
) -> Result<BTreeMap<String, NamedTensor>, WeightsError> {
    let Value::Dict(entries) = root else {
        return Err(WeightsError::malformed(
            path,
            FORMAT,
            "the checkpoint is not a state dict",
        ));
    };
    // Some checkpoints wrap the state dict: {'state_dict': {...}} or {'model': {...}}.
    if let Some((_, inner)) = entries.iter().find(|(k, v)| {
        matches!(k, Value::Str(s) if s == "state_dict" || s == "model")
            && matches!(v, Value::Dict(_))
    }) {
        return collect(path, inner.clone(), storage_bytes);
    }
    let mut cache: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        let (key, ty, _numel) = storage_of(&t.storage).map_err(|e| pickle_error(path, e))?;
        if !ty.is_float() {
            continue;
        }
        if !cache.contains_key(&key) {
            let b = storage_bytes(&key)?;
            cache.insert(key.clone(), b);
        }
        let bytes = &cache[&key];
        let data = gather(bytes, ty, &t)
            .map_err(|e| WeightsError::malformed(path, FORMAT, format!("tensor '{name}': {e}")))?;
        out.insert(name, NamedTensor::new(t.size.clone(), data));
    }
    Ok(out)
}

/// Reads a (possibly strided) view of a storage into a dense row-major vector. Every size,
/// stride and offset is checked, without overflow, against the bytes the storage has, and a
/// view may not hold more elements than its storage (so memory stays bounded by the file).
fn gather(bytes: &[u8], ty: StorageType, t: &TensorRef) -> Result<Vec<f32>, String> {
    let es = ty.size();
    if t.size.len() != t.stride.len() {
        return Err("size and stride differ in length".into());
    }
    let too_big = || "its size, stride or offset overflow".to_string();
    let n = t
        .size
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_big)?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let elements = bytes.len() / es;
    if n > elements {
        return Err(format!(
            "views {n} elements of a storage that holds {elements} (file truncated or crafted?)"
        ));
    }
    let mut max_index = t.offset;
    for (&s, &st) in t.size.iter().zip(&t.stride) {
        let reach = (s - 1).checked_mul(st).ok_or_else(too_big)?;
        max_index = max_index.checked_add(reach).ok_or_else(too_big)?;
    }
    if max_index >= elements {
        return Err(format!(
            "needs {} elements of its storage, which has {elements} (file truncated?)",
            max_index as u128 + 1,
        ));
    }
    // Every index below is at most `max_index`, checked above.
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; t.size.len()];
    for _ in 0..n {
        let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(ty.read(&bytes[off * es..off * es + es]));
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.size[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// Reads one zip entry whole, refusing one whose declared size its compressed bytes cannot
/// hold ([`super::MAX_DEFLATE_EXPANSION`]) and never reading past the declared size.
fn read_entry(
    archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
) -> Result<Vec<u8>, String> {
    let f = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
    let size = f.size();
    let most = f
        .compressed_size()
        .saturating_mul(super::MAX_DEFLATE_EXPANSION);
    if size > most.saturating_add(64) {
        return Err(format!(
            "{name}: declares {size} bytes from {} compressed (a zip bomb?)",
            f.compressed_size()
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 30));
    f.take(size)
        .read_to_end(&mut out)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(out)
}

fn load_zip(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, NamedTensor>, WeightsError> {
    let bad = |e: String| WeightsError::malformed(path, FORMAT, e);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| bad(format!("zip archive: {e}")))?;
    let pkl_name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl"))
        .map(str::to_string)
        .ok_or_else(|| bad("no data.pkl in the archive".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let pkl = read_entry(&mut archive, &pkl_name).map_err(bad)?;
    let (root, _) = pickle::read(&pkl).map_err(|e| pickle_error(path, e))?;
    let archive = std::cell::RefCell::new(archive);
    let storage_bytes = |key: &str| -> Result<Vec<u8>, WeightsError> {
        let name = format!("{prefix}data/{key}");
        read_entry(&mut archive.borrow_mut(), &name).map_err(|e| bad(format!("storage {e}")))
    };
    collect(path, root, &storage_bytes)
}

fn load_legacy(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, NamedTensor>, WeightsError> {
    let mut pos = 0;
    let mut next = |what: &str| -> Result<Value, WeightsError> {
        let (v, used) =
            pickle::read(&bytes[pos..]).map_err(|e| match e.starts_with("UNSAFE:") {
                true => pickle_error(path, e),
                false => WeightsError::malformed(path, FORMAT, format!("{what}: {e}")),
            })?;
        pos += used;
        Ok(v)
    };
    let _magic = next("magic number")?;
    let protocol = next("protocol version")?;
    if protocol != Value::Int(1001) {
        return Err(WeightsError::malformed(
            path,
            FORMAT,
            format!("unsupported legacy protocol {}", pickle::brief(&protocol)),
        ));
    }
    let _sys_info = next("sys_info")?;
    let root = next("state dict")?;
    let keys = next("storage keys")?;
    let Value::List(keys) = keys else {
        return Err(WeightsError::malformed(
            path,
            FORMAT,
            "storage key list missing",
        ));
    };
    // Element sizes and counts come from the persistent ids inside the state dict.
    let mut meta: HashMap<String, (StorageType, usize)> = HashMap::new();
    if let Value::Dict(entries) = &root {
        for (_, v) in entries {
            if let Value::Tensor(t) = v
                && let Ok((key, ty, numel)) = storage_of(&t.storage)
            {
                meta.insert(key, (ty, numel));
            }
        }
    }
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(WeightsError::malformed(
                path,
                FORMAT,
                "non-string storage key",
            ));
        };
        let truncated =
            || WeightsError::malformed(path, FORMAT, format!("storage {key}: file truncated"));
        let count_bytes = bytes
            .get(pos..pos.saturating_add(8))
            .ok_or_else(truncated)?;
        let count = u64::from_le_bytes(count_bytes.try_into().map_err(|_| truncated())?) as usize;
        pos += 8;
        let es = meta.get(&key).map_or(4, |(ty, _)| ty.size());
        let len = count.checked_mul(es).ok_or_else(truncated)?;
        let data = bytes
            .get(pos..pos.checked_add(len).ok_or_else(truncated)?)
            .ok_or_else(truncated)?;
        storages.insert(key.clone(), data.to_vec());
        pos += len;
    }
    let storage_bytes = |key: &str| -> Result<Vec<u8>, WeightsError> {
        storages.get(key).cloned().ok_or_else(|| {
            WeightsError::malformed(path, FORMAT, format!("storage {key} not in the file"))
        })
    };
    collect(path, root, &storage_bytes)
}
