//! `faceattr data inspect`: what a dataset really holds. Every image is fully decoded (a
//! header check misses truncated files), in parallel.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use super::LabeledSet;
use super::bad::BadImage;
use super::decode::decode_bytes;

#[derive(Debug, Serialize)]
pub struct ClassCount {
    pub name: String,
    /// Images of this class that decode.
    pub count: usize,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Spread {
    pub min: u32,
    pub median: u32,
    pub max: u32,
}

#[derive(Debug, Serialize)]
pub struct Sizes {
    pub width: Option<Spread>,
    pub height: Option<Spread>,
}

#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub classes: Vec<ClassCount>,
    pub bad: Vec<BadImage>,
    /// Decoded images per format (by content, not extension).
    pub formats: BTreeMap<String, usize>,
    pub sizes: Sizes,
}

fn spread(mut v: Vec<u32>) -> Option<Spread> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(Spread {
        min: v[0],
        median: v[v.len() / 2],
        max: v[v.len() - 1],
    })
}

pub fn inspect(set: &LabeledSet, pixel_limit: u64, on_done: impl Fn() + Sync) -> InspectReport {
    let results: Vec<Result<(usize, String, u32, u32), BadImage>> = set
        .samples
        .par_iter()
        .map(|s| {
            let r = std::fs::read(&s.path)
                .map_err(|source| super::decode::DecodeError::Io {
                    path: s.path.clone(),
                    source,
                })
                .and_then(|bytes| {
                    let format = image::guess_format(&bytes)
                        .map(|f| format!("{f:?}").to_lowercase())
                        .unwrap_or_default();
                    decode_bytes(&s.path, &bytes, pixel_limit)
                        .map(|img| (s.label, format, img.width(), img.height()))
                })
                .map_err(|e| BadImage::from(&e));
            on_done();
            r
        })
        .collect();
    let mut counts = vec![0usize; set.classes.len()];
    let (mut bad, mut formats, mut ws, mut hs) =
        (Vec::new(), BTreeMap::new(), Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok((label, format, w, h)) => {
                counts[label] += 1;
                *formats.entry(format).or_insert(0) += 1;
                ws.push(w);
                hs.push(h);
            }
            Err(b) => bad.push(b),
        }
    }
    InspectReport {
        classes: set
            .classes
            .iter()
            .zip(counts)
            .map(|(n, c)| ClassCount {
                name: n.clone(),
                count: c,
            })
            .collect(),
        bad,
        formats,
        sizes: Sizes {
            width: spread(ws),
            height: spread(hs),
        },
    }
}
