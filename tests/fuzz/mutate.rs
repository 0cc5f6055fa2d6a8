//! Deterministic mutations of valid inputs: bit flips, interesting integers written over any
//! field (sizes, offsets, dimensions), truncation, chunks deleted, repeated or spliced in from
//! another seed, and for text formats hostile tokens.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Values that break size arithmetic: zero, one, sign bits, powers near the type limits.
pub const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 61,
    i64::MAX as u64,
    u64::MAX,
];

const TOKENS: &[&str] = &[
    "-1",
    "0",
    "99999999999999999999999",
    "NaN",
    "\0",
    "\n",
    "\r\n",
    ",",
    "\"",
    "../../../etc/passwd",
    "\u{feff}",
    "é",
];

pub struct Mutator {
    pub rng: ChaCha8Rng,
    pub text: bool,
}

impl Mutator {
    pub fn new(seed: u64, text: bool) -> Self {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            text,
        }
    }

    /// `seed` changed by one to four mutations; `others` are spliced from.
    pub fn mutate(&mut self, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
        let mut b = seed.to_vec();
        let n = self.rng.random_range(1..=4);
        for _ in 0..n {
            self.once(&mut b, others);
        }
        b
    }

    fn at(&mut self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            self.rng.random_range(0..len)
        }
    }

    fn once(&mut self, b: &mut Vec<u8>, others: &[Vec<u8>]) {
        let len = b.len();
        match self.rng.random_range(0..if self.text { 8 } else { 7 }) {
            0 if len > 0 => {
                let i = self.at(len);
                b[i] ^= 1 << self.rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = self.at(len);
                b[i] = [0u8, 1, 0x7f, 0x80, 0xff][self.rng.random_range(0..5)];
            }
            2 => {
                // an integer field: 2, 4 or 8 bytes, little- or big-endian
                let width = [2usize, 4, 8][self.rng.random_range(0..3)];
                if len >= width {
                    let i = self.at(len - width + 1);
                    let v = INTERESTING[self.rng.random_range(0..INTERESTING.len())];
                    if self.rng.random_bool(0.5) {
                        b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
                    } else {
                        b[i..i + width].copy_from_slice(&v.to_be_bytes()[8 - width..]);
                    }
                }
            }
            3 => {
                let keep = self.at(len);
                b.truncate(keep);
            }
            4 if len > 1 => {
                let i = self.at(len);
                let n = self.rng.random_range(1..=(len - i).min(256));
                b.drain(i..i + n);
            }
            5 if len > 1 => {
                let i = self.at(len);
                let n = self.rng.random_range(1..=(len - i).min(256));
                let chunk = b[i..i + n].to_vec();
                let at = self.at(len);
                let times = self.rng.random_range(1..=4);
                for _ in 0..times {
                    b.splice(at..at, chunk.iter().copied());
                }
            }
            6 if !others.is_empty() => {
                let o = &others[self.rng.random_range(0..others.len())];
                if !o.is_empty() {
                    let i = self.at(o.len());
                    let n = self.rng.random_range(1..=(o.len() - i).min(1024));
                    let at = self.at(len);
                    b.splice(at..at, o[i..i + n].iter().copied());
                }
            }
            7 => {
                let t = TOKENS[self.rng.random_range(0..TOKENS.len())];
                let at = self.at(len);
                b.splice(at..at, t.bytes());
            }
            _ => {}
        }
    }
}
