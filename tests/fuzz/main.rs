//! Fuzzing every reader of user files, on stable Rust, in the test suite.
//!
//! Each format starts from valid seeds (the Keras and PyTorch fixtures, a faceattr model,
//! images encoded in every format faceattr decodes, manifests and CelebA lists) and runs
//! mutated copies through the real reader, from a file on disk, as a user's command would.
//! Formats with sizes in their structure also get hostile generated inputs (pickles with
//! huge strides and memo copies, safetensors headers with huge shapes). Every case must end
//! in a value or an error that names the file; no panic may escape, no panic may come from
//! faceattr's own code, live memory may not grow past 64 MiB plus a multiple of the input's
//! size (the counting allocator aborts, naming the case), and no case may take 10 s.
//!
//! `FACEATTR_FUZZ_CASES` sets the cases per format (default 2000, about 10 s; `scripts/fuzz.sh` runs
//! longer), `FACEATTR_FUZZ_SEED` the seed. Failing inputs are kept under
//! `target/tmp/fuzz-failures/`.

mod alloc;
#[path = "../common/mod.rs"]
mod common;
mod hostile;
mod mutate;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

type Reader = Box<dyn Fn(&Path) -> Result<(), String>>;
type Generator = fn(&mut ChaCha8Rng) -> Vec<u8>;

struct Target {
    name: &'static str,
    ext: &'static str,
    seeds: Vec<Vec<u8>>,
    read: Reader,
    /// Structure-aware hostile inputs, used for one case in three.
    hostile: Option<Generator>,
    text: bool,
    /// Live bytes a case may add per input byte (beyond 64 MiB).
    bytes_per_byte: usize,
    /// This format's share of the cases (slow readers get fewer).
    share: f64,
}

#[derive(Default)]
struct Tally {
    cases: usize,
    accepted: usize,
    refused: usize,
    contained: Vec<String>,
    failures: Vec<String>,
    slowest: Duration,
    peak: usize,
}

fn cases() -> usize {
    std::env::var("FACEATTR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn seed() -> u64 {
    std::env::var("FACEATTR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join(rel)).expect("fixture")
}

fn weights_reader() -> Reader {
    let device = common::device();
    Box::new(move |p| {
        let ws = faceattr::weights::load(p).map_err(|e| e.to_string())?;
        outcome(faceattr::model::vgg16::Vgg16::from_weights(&ws, &device))
    })
}

/// A `.pth` zip holding `pkl` and two storages of random lengths.
fn pth_of(pkl: Vec<u8>, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let _ = zip.start_file("archive/data.pkl", opts);
    let _ = zip.write_all(&pkl);
    for key in ["0", "1"] {
        let _ = zip.start_file(format!("archive/data/{key}"), opts);
        let n = rng.random_range(0..64usize) * 4;
        let _ = zip.write_all(&vec![0x3f; n]);
    }
    let _ = zip.finish();
    out.into_inner()
}

/// The fixture's `data.pkl`: mutated and re-zipped, so that mutations reach the unpickler
/// instead of failing the zip's CRC check.
fn fixture_pickle() -> &'static [u8] {
    static PKL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PKL.get_or_init(|| {
        let bytes = fixture("torch/tiny_vgg16.pth");
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("fixture zip");
        let name = zip
            .file_names()
            .find(|n| n.ends_with("data.pkl"))
            .expect("data.pkl")
            .to_string();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(&name).expect("entry"), &mut out)
            .expect("read");
        out
    })
}

fn hostile_pth(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let pkl = match rng.random_range(0..3) {
        0 => hostile::state_dict(rng),
        1 => hostile::opcodes(rng),
        _ => {
            let mut m = mutate::Mutator::new(rng.random(), false);
            m.mutate(fixture_pickle(), &[])
        }
    };
    pth_of(pkl, rng)
}

/// A small picture encoded in every format the `image` crate writes here.
fn image_seeds() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
    let rgba = RgbaImage::from_fn(40, 32, |x, y| {
        Rgba([
            (x * 6) as u8,
            (y * 8) as u8,
            ((x ^ y) * 9) as u8,
            (255 - x * 3) as u8,
        ])
    });
    let mut seeds = Vec::new();
    for (img, formats) in [
        (
            DynamicImage::ImageRgba8(rgba.clone()),
            &[
                ImageFormat::Png,
                ImageFormat::WebP,
                ImageFormat::Tiff,
                ImageFormat::Qoi,
            ][..],
        ),
        (
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).to_rgb8()),
            &[
                ImageFormat::Jpeg,
                ImageFormat::Gif,
                ImageFormat::Bmp,
                ImageFormat::Pnm,
                ImageFormat::Tga,
                ImageFormat::Ico,
            ][..],
        ),
    ] {
        for &f in formats {
            let mut buf = std::io::Cursor::new(Vec::new());
            if img.write_to(&mut buf, f).is_ok() {
                seeds.push(buf.into_inner());
            }
        }
    }
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for f in ["progressive.jpg", "cmyk.jpg"] {
        seeds.push(std::fs::read(data.join(f)).expect("test image"));
    }
    seeds
}

impl Target {
    /// A binary format read by `read`, with the default memory allowance and share of cases.
    fn new(name: &'static str, ext: &'static str, seeds: Vec<Vec<u8>>, read: Reader) -> Self {
        Target {
            name,
            ext,
            seeds,
            read,
            hostile: None,
            text: false,
            bytes_per_byte: 64,
            share: 1.0,
        }
    }

    /// A text format: hostile tokens among the mutations, half the cases.
    fn text(name: &'static str, ext: &'static str, seed: &[u8], read: Reader) -> Self {
        Target {
            text: true,
            share: 0.5,
            ..Target::new(name, ext, vec![seed.to_vec()], read)
        }
    }
}

/// A reader's outcome with its value dropped and its error as text.
fn outcome<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| e.to_string())
}

fn targets() -> Vec<Target> {
    let device = common::device();
    let model = std::fs::read(common::tiny_model()).expect("tiny model");
    let safetensors = vec![
        fixture("torch/tiny_vgg16.safetensors"),
        fixture("torch/tiny_vgg16_timm.safetensors"),
    ];
    let h5 = vec![
        fixture("keras/tiny_vgg16_notop.h5"),
        fixture("keras/tiny_model_full.h5"),
    ];
    let attr_list = b"3\n5_o_Clock_Shadow Male Smiling\n000001.jpg -1  1 -1\n000002.jpg  1 -1  1\n000003.jpg -1 -1 -1\n";
    vec![
        Target {
            hostile: Some(hostile_pth),
            ..Target::new(
                "PyTorch .pth (zip)",
                "pth",
                vec![fixture("torch/tiny_vgg16.pth")],
                weights_reader(),
            )
        },
        Target::new(
            "PyTorch .pth (legacy)",
            "pth",
            vec![fixture("torch/tiny_vgg16_legacy.pth")],
            weights_reader(),
        ),
        Target {
            hostile: Some(hostile::safetensors),
            ..Target::new("safetensors", "safetensors", safetensors, weights_reader())
        },
        Target {
            // deflate-compressed datasets may expand 1032 times, 4 bytes an element
            bytes_per_byte: 4 * 1032 + 64,
            ..Target::new("Keras HDF5", "h5", h5, weights_reader())
        },
        Target::new(
            "faceattr model / checkpoint",
            "safetensors",
            vec![model],
            Box::new(move |p| outcome(faceattr::model::saved::load(p, &device))),
        ),
        Target {
            share: 2.0,
            ..Target::new(
                "images (10 formats)",
                "img",
                image_seeds(),
                Box::new(|p| outcome(faceattr::data::decode::decode_rgb(p, 4_000_000))),
            )
        },
        Target::text(
            "CSV manifest",
            "csv",
            b"path,label\na.jpg,female\nsub/b.png,male\n\"c,d.jpg\",female\n",
            Box::new(|p| outcome(faceattr::data::manifest::read(p))),
        ),
        Target::text(
            "CelebA list_attr_celeba.txt",
            "txt",
            attr_list,
            Box::new(|p| {
                outcome(faceattr::data::celeba::read_attribute(
                    p,
                    "Male",
                    &mut Vec::new(),
                ))
            }),
        ),
        Target::text(
            "CelebA list_eval_partition.txt",
            "txt",
            b"000001.jpg 0\n000002.jpg 1\n000003.jpg 2\n",
            Box::new(|p| outcome(faceattr::data::celeba::read_partition(p, &mut Vec::new()))),
        ),
        Target {
            bytes_per_byte: 256,
            share: 0.1,
            ..Target::new(
                "YuNet ONNX (--detector)",
                "onnx",
                vec![faceattr::faces::yunet::EMBEDDED.to_vec()],
                Box::new(|p| outcome(faceattr::faces::yunet::Yunet::from_file(p))),
            )
        },
    ]
}

fn run(t: &Target, n: usize, dir: &Path, failures: &Path) -> Tally {
    let mut tally = Tally::default();
    let mut m = mutate::Mutator::new(seed() ^ fxhash(t.name), t.text);
    let file = dir.join(format!("case.{}", t.ext));
    for i in 0..n {
        let input = match t.hostile {
            Some(g) if i % 3 == 0 => g(&mut m.rng),
            _ => {
                let s = &t.seeds[i % t.seeds.len()];
                m.mutate(s, &t.seeds)
            }
        };
        std::fs::write(&file, &input).expect("case file");
        if let Ok(mut c) = alloc::CASE.lock() {
            *c = format!("{} case {i} (input in {})", t.name, file.display());
        }
        let limit = (64 << 20) + input.len() * t.bytes_per_byte;
        let base = alloc::limit(limit);
        let start = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.read)(&file)));
        let took = start.elapsed();
        tally.peak = tally.peak.max(alloc::unlimit().saturating_sub(base));
        tally.slowest = tally.slowest.max(took);
        tally.cases += 1;
        let mut keep = |why: String| {
            let kept = failures.join(format!(
                "{}-{i}.{}",
                t.name.replace([' ', '/', '(', ')'], "_"),
                t.ext
            ));
            let _ = std::fs::write(&kept, &input);
            tally
                .failures
                .push(format!("{why} (input kept in {})", kept.display()));
        };
        match outcome {
            Err(_) => keep(format!("case {i}: a panic escaped the reader")),
            Ok(Ok(())) => tally.accepted += 1,
            Ok(Err(msg)) => {
                tally.refused += 1;
                if !msg.contains(&file.display().to_string()) {
                    keep(format!("case {i}: the error does not name the file: {msg}"));
                } else if msg.contains(" at src/") {
                    keep(format!("case {i}: faceattr's own code panicked: {msg}"));
                } else if msg.contains("failed on this file (") {
                    tally.contained.push(msg);
                }
            }
        }
        if took > Duration::from_secs(10) {
            keep(format!("case {i}: took {took:?}"));
        }
    }
    tally
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn no_reader_panics_aborts_or_blows_up_on_mutated_and_hostile_files() {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join("fuzz-cases");
    let failures = tmp.join("fuzz-failures");
    std::fs::create_dir_all(&dir).expect("case dir");
    std::fs::create_dir_all(&failures).expect("failure dir");
    let total = cases();
    println!(
        "{:<32} {:>6} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "format", "cases", "accepted", "refused", "contained", "slowest", "peak MB"
    );
    let mut all_failures = Vec::new();
    for t in targets() {
        let n = ((total as f64 * t.share).ceil() as usize).max(1);
        let tally = run(&t, n, &dir, &failures);
        println!(
            "{:<32} {:>6} {:>8} {:>8} {:>10} {:>7.0}ms {:>9.1}",
            t.name,
            tally.cases,
            tally.accepted,
            tally.refused,
            tally.contained.len(),
            tally.slowest.as_secs_f64() * 1000.0,
            tally.peak as f64 / (1 << 20) as f64,
        );
        let mut seen = std::collections::BTreeSet::new();
        for c in &tally.contained {
            // one line per distinct dependency panic
            let at = c.rsplit(" at ").next().unwrap_or(c).to_string();
            if seen.insert(at) {
                println!("    contained: {c}");
            }
        }
        all_failures.extend(
            tally
                .failures
                .into_iter()
                .map(|f| format!("{}: {f}", t.name)),
        );
    }
    assert!(all_failures.is_empty(), "{}", all_failures.join("\n"));
}
