//! Inputs that are structurally valid but ask for too much: pickles with hostile sizes,
//! strides, offsets, memo references and nesting; safetensors headers with hostile shapes and
//! offsets.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::mutate::INTERESTING;

fn interesting(rng: &mut ChaCha8Rng) -> i64 {
    if rng.random_bool(0.5) {
        rng.random_range(0..8)
    } else {
        INTERESTING[rng.random_range(0..INTERESTING.len())] as i64
    }
}

fn pickle_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn pickle_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&[0x8a, 8]);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A state dict of one to three tensors whose numel, offset, sizes and strides are hostile.
pub fn state_dict(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    for t in 0..rng.random_range(1..=3) {
        pickle_str(&mut p, &format!("features.{}.weight", [0, 2, 28][t]));
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        pickle_str(&mut p, "storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        pickle_str(&mut p, &rng.random_range(0..2).to_string());
        pickle_str(&mut p, "cpu");
        pickle_int(&mut p, interesting(rng));
        p.extend_from_slice(b"tQ");
        pickle_int(&mut p, interesting(rng));
        let rank = rng.random_range(0..=5);
        for _ in 0..2 {
            p.push(b'(');
            for _ in 0..rank {
                pickle_int(&mut p, interesting(rng));
            }
            p.push(b't');
        }
        p.extend_from_slice(b"t");
        p.push(b'R');
    }
    p.extend_from_slice(b"u.");
    p
}

/// A random sequence of container, memo and stack opcodes: nesting, memo copies, APPENDS.
pub fn opcodes(rng: &mut ChaCha8Rng) -> Vec<u8> {
    const OPS: &[&[u8]] = &[
        b"]",
        b"(",
        b"l",
        b"t",
        b"a",
        b"e",
        b"}",
        b"s",
        b"u",
        b"d",
        b"K\x05",
        b"N",
        b"q\x00",
        b"q\x01",
        b"h\x00",
        b"h\x01",
        b"\x94",
        b"\x85",
        b"\x86",
        b"\x87",
        b"X\x03\x00\x00\x00abc",
    ];
    let mut p = b"\x80\x02".to_vec();
    for _ in 0..rng.random_range(10..600) {
        p.extend_from_slice(OPS[rng.random_range(0..OPS.len())]);
    }
    p.push(b'.');
    p
}

/// A safetensors file whose header declares hostile shapes, dtypes and offsets.
pub fn safetensors(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let data_len = rng.random_range(0..256usize);
    let mut header = serde_json::Map::new();
    for t in 0..rng.random_range(1..=3) {
        let rank = rng.random_range(0..=4);
        let shape: Vec<u64> = (0..rank).map(|_| interesting(rng) as u64).collect();
        let a = interesting(rng) as u64 % (data_len as u64 + 2);
        let b = if rng.random_bool(0.5) {
            interesting(rng) as u64
        } else {
            data_len as u64
        };
        let dtype = ["F32", "F16", "BF16", "F64", "I64", "U8"][rng.random_range(0..6)];
        header.insert(
            ["features.0.weight", "features.0.bias", "head.fc1.weight"][t].into(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [a, b]}),
        );
    }
    let h = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend(std::iter::repeat_n(0x3fu8, data_len));
    out
}
