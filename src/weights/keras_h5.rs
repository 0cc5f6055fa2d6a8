//! Keras legacy HDF5 weights (`model.save_weights('x.h5')` and the official
//! `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`).
//!
//! The file is walked as Keras itself walks it: the root attribute `layer_names`, then each
//! layer group's `weight_names` attribute, whose entries are dataset paths relative to the
//! layer group. Tensors are matched by their names, never by position, because Keras writes a
//! nested model's trainable weights first. Both the official flat layout
//! (`block1_conv1/block1_conv1_W_1:0`) and tf.keras' nested one
//! (`block1_conv1/block1_conv1/kernel:0`) are handled. Reader: the pure-Rust `hdf5-reader`
//! crate, so no system HDF5 library is needed.

use std::collections::BTreeMap;
use std::path::Path;

use hdf5_reader::{Attribute, Hdf5File};

use super::{NamedTensor, WeightFormat, WeightSet, WeightsError};
use crate::preprocess::Preprocessing;

const FORMAT: &str = "Keras HDF5";

pub fn load(path: &Path) -> Result<WeightSet, WeightsError> {
    let bad = |reason: String| WeightsError::malformed(path, FORMAT, reason);
    let file_len = std::fs::metadata(path)
        .map_err(|e| WeightsError::io(path, e))?
        .len();
    let file = Hdf5File::open(path).map_err(|e| bad(e.to_string()))?;
    let root = file.root_group().map_err(|e| bad(e.to_string()))?;
    let layer_names = string_list(&root, "layer_names")
        .map_err(|e| bad(format!("root attribute 'layer_names': {e}")))?;
    let mut tensors = BTreeMap::new();
    for layer in &layer_names {
        let group = root
            .group(layer)
            .map_err(|e| bad(format!("layer group '{layer}': {e}")))?;
        let weight_names = string_list(&group, "weight_names")
            .map_err(|e| bad(format!("'{layer}/weight_names': {e}")))?;
        for weight_name in &weight_names {
            let ds = group
                .dataset(weight_name)
                .or_else(|_| file.dataset(&format!("/{layer}/{weight_name}")))
                .map_err(|e| bad(format!("dataset '{layer}/{weight_name}': {e}")))?;
            let shape: Vec<usize> = ds
                .shape()
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect();
            let n = shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&n| {
                    (n as u64).saturating_mul(4)
                        <= file_len.saturating_mul(super::MAX_DEFLATE_EXPANSION)
                })
                .ok_or_else(|| {
                    bad(format!(
                        "dataset '{layer}/{weight_name}' declares shape {shape:?}, more than a \
                         {file_len}-byte file can hold"
                    ))
                })?;
            let mut data = vec![0.0f32; n];
            ds.read_into(&mut data)
                .map_err(|e| bad(format!("dataset '{layer}/{weight_name}': {e}")))?;
            let Some((owner, kind)) = canonical_name(weight_name) else {
                continue;
            };
            let t = NamedTensor::new(shape, data);
            let (name, t) = match kind {
                "kernel" if t.shape.len() == 4 => (format!("{owner}.weight"), t.hwio_to_oihw()),
                "kernel" => (format!("{owner}.weight"), t),
                "bias" => (format!("{owner}.bias"), t),
                other => (format!("{owner}.{other}"), t),
            };
            tensors.insert(name, t);
        }
    }
    Ok(WeightSet {
        origin: path.to_path_buf(),
        format: WeightFormat::KerasH5,
        preprocessing: Preprocessing::Caffe,
        tensors,
    })
}

/// `block1_conv1/kernel:0` -> (`block1_conv1`, `kernel`); `block1_conv1_W_1:0` -> (…, `kernel`);
/// `batch_normalization/moving_mean:0` -> (…, `moving_mean`).
fn canonical_name(weight_name: &str) -> Option<(String, &'static str)> {
    let stem = weight_name.rsplit_once(':').map_or(weight_name, |(s, _)| s);
    let kinds = [
        "kernel",
        "bias",
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
    ];
    if let Some((owner, kind)) = stem.rsplit_once('/') {
        let owner = owner.rsplit('/').next().unwrap_or(owner);
        return kinds
            .iter()
            .find(|k| **k == kind)
            .map(|k| (owner.to_string(), *k));
    }
    // The 2017 official file: `block1_conv1_W_1`, `block1_conv1_b_1` (Theano-era names).
    let (owner_and_kind, _) = stem.rsplit_once('_')?;
    let (owner, kind) = owner_and_kind.rsplit_once('_')?;
    match kind {
        "W" => Some((owner.to_string(), "kernel")),
        "b" => Some((owner.to_string(), "bias")),
        _ => None,
    }
}

/// Reads a string-array attribute: fixed-length byte strings (old h5py) or variable-length
/// strings (h5py 3), whose elements are global-heap references. An empty list is written by
/// h5py as a zero-length float64 array.
fn string_list(group: &hdf5_reader::group::Group, name: &str) -> Result<Vec<String>, String> {
    let attr: Attribute = group.attribute(name).map_err(|e| e.to_string())?;
    if attr.num_elements() == 0 || attr.shape.first() == Some(&0) {
        return Ok(Vec::new());
    }
    if let Ok(v) = attr.read_strings() {
        return Ok(v);
    }
    let data = group.file_data().map_err(|e| e.to_string())?;
    if let Ok(v) = attr.read_vlen_strings(&data, group.offset_size()) {
        return Ok(v);
    }
    vlen_byte_strings(&attr, &data, group.offset_size(), group.length_size())
}

/// Variable-length sequences of bytes (h5py 3's `vlen str`): each element is
/// (length u32, heap collection address, object index u32).
fn vlen_byte_strings(
    attr: &Attribute,
    file: &[u8],
    offset_size: u8,
    length_size: u8,
) -> Result<Vec<String>, String> {
    use hdf5_reader::global_heap::GlobalHeapCollection;
    use hdf5_reader::io::Cursor;
    if !matches!(attr.datatype, hdf5_reader::Datatype::VarLen { .. }) {
        return Err(format!("expected strings, found {:?}", attr.datatype));
    }
    let ref_size = 4 + offset_size as usize + 4;
    let n = attr.num_elements() as usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let raw = attr
            .raw_data
            .get(i * ref_size..(i + 1) * ref_size)
            .ok_or("attribute data too short")?;
        let mut c = Cursor::new(raw);
        let len = c.read_u32_le().map_err(|e| e.to_string())? as usize;
        let addr = match offset_size {
            4 => c.read_u32_le().map_err(|e| e.to_string())? as u64,
            _ => c.read_u64_le().map_err(|e| e.to_string())?,
        };
        let index = c.read_u32_le().map_err(|e| e.to_string())?;
        if index == 0 {
            out.push(String::new());
            continue;
        }
        let mut heap = Cursor::new(file);
        heap.set_position(addr);
        let coll = GlobalHeapCollection::parse(&mut heap, offset_size, length_size)
            .map_err(|e| e.to_string())?;
        let obj = coll
            .get_object(index as u16)
            .ok_or_else(|| format!("global heap object {index} missing"))?;
        let bytes = &obj.data[..len.min(obj.data.len())];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        out.push(String::from_utf8(bytes[..end].to_vec()).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::canonical_name;

    #[test]
    fn weight_names_of_both_layouts() {
        assert_eq!(
            canonical_name("block1_conv1/kernel:0"),
            Some(("block1_conv1".into(), "kernel"))
        );
        assert_eq!(
            canonical_name("vgg16/block5_conv3/bias:0"),
            Some(("block5_conv3".into(), "bias"))
        );
        assert_eq!(
            canonical_name("block1_conv1_W_1:0"),
            Some(("block1_conv1".into(), "kernel"))
        );
        assert_eq!(
            canonical_name("block4_conv2_b_1:0"),
            Some(("block4_conv2".into(), "bias"))
        );
        assert_eq!(
            canonical_name("batch_normalization/moving_variance:0"),
            Some(("batch_normalization".into(), "moving_variance"))
        );
        assert_eq!(canonical_name("something/else:0"), None);
    }
}
