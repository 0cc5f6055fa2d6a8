//! The data layer on files the tests make themselves: every format and colour type, bad files
//! of each kind, EXIF orientation, a decompression bomb, nested class folders, manifests, a
//! fake miniature CelebA, and the pipeline's order.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use faceattr::data::bad::{BadImageLog, BadImagePolicy};
use faceattr::data::celeba::{Layout, PerClass, build};
use faceattr::data::decode::{
    DEFAULT_PIXEL_LIMIT, DecodeError, Decoding, decode_rgb, decode_rgb_as,
};
use faceattr::data::inspect::inspect;
use faceattr::data::pipeline::{Pipeline, epoch_order};
use faceattr::data::{DataError, LabeledSet};
use faceattr::preprocess::InputSpec;
use faceattr::preprocess::{Interpolation, Preprocessing};
use image::{DynamicImage, ImageBuffer, ImageEncoder, ImageFormat, Luma, LumaA, Rgb, Rgba};

/// Left half red, right half blue, 32x16.
fn halves() -> image::RgbImage {
    ImageBuffer::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([220, 20, 20])
        } else {
            Rgb([20, 20, 220])
        }
    })
}

fn save(img: &DynamicImage, path: &Path, format: ImageFormat) {
    img.save_with_format(path, format)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn assert_reddish(p: [u8; 3], what: &str) {
    assert!(p[0] > 150 && p[2] < 100, "{what}: expected red, got {p:?}");
}
fn assert_bluish(p: [u8; 3], what: &str) {
    assert!(p[2] > 150 && p[0] < 100, "{what}: expected blue, got {p:?}");
}

#[test]
fn every_format_and_colour_type_decodes_to_the_same_picture() {
    let d = tempfile::tempdir().unwrap();
    let rgb = DynamicImage::ImageRgb8(halves());
    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgba([220, 20, 20, 255])
        } else {
            Rgba([20, 20, 220, 255])
        }
    }));
    let rgb16 = DynamicImage::ImageRgb16(ImageBuffer::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([56000u16, 5000, 5000])
        } else {
            Rgb([5000, 5000, 56000])
        }
    }));
    let cases: Vec<(&str, DynamicImage, ImageFormat)> = vec![
        ("baseline.jpg", rgb.clone(), ImageFormat::Jpeg),
        ("rgb8.png", rgb.clone(), ImageFormat::Png),
        ("rgba8.png", rgba.clone(), ImageFormat::Png),
        ("rgb16.png", rgb16, ImageFormat::Png),
        ("pic.bmp", rgb.clone(), ImageFormat::Bmp),
        ("pic.webp", rgba.clone(), ImageFormat::WebP),
        ("pic.gif", rgba.clone(), ImageFormat::Gif),
        ("pic.tiff", rgb.clone(), ImageFormat::Tiff),
        // a PNG under a JPEG name: decoded by content
        ("actually_png.jpg", rgb.clone(), ImageFormat::Png),
    ];
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    for (name, img, fmt) in cases {
        let p = d.path().join(name);
        save(&img, &p, fmt);
        paths.push((name.to_string(), p));
    }
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    paths.push(("progressive.jpg".into(), data.join("progressive.jpg")));
    paths.push(("cmyk.jpg".into(), data.join("cmyk.jpg")));
    for (name, p) in paths {
        let img = decode_rgb(&p, DEFAULT_PIXEL_LIMIT).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (32, 16), "{name}");
        assert_reddish(img.get_pixel(4, 8).0, &name);
        assert_bluish(img.get_pixel(28, 8).0, &name);
    }
}

#[test]
fn grey_palette_and_alpha_are_converted() {
    let d = tempfile::tempdir().unwrap();
    // grey 8-bit and grey+alpha 16-bit-ish
    let grey = DynamicImage::ImageLuma8(ImageBuffer::from_fn(8, 8, |x, _| {
        Luma([if x < 4 { 30 } else { 200 }])
    }));
    save(&grey, &d.path().join("g.png"), ImageFormat::Png);
    let g = decode_rgb(&d.path().join("g.png"), DEFAULT_PIXEL_LIMIT).unwrap();
    assert_eq!(g.get_pixel(1, 1).0, [30, 30, 30]);
    assert_eq!(g.get_pixel(6, 1).0, [200, 200, 200]);
    // fully transparent black over white is white; opaque stays
    let la = DynamicImage::ImageLumaA8(ImageBuffer::from_fn(8, 8, |x, _| {
        if x < 4 {
            LumaA([0, 0])
        } else {
            LumaA([10, 255])
        }
    }));
    save(&la, &d.path().join("la.png"), ImageFormat::Png);
    let a = decode_rgb(&d.path().join("la.png"), DEFAULT_PIXEL_LIMIT).unwrap();
    assert_eq!(a.get_pixel(1, 1).0, [255, 255, 255]);
    assert_eq!(a.get_pixel(6, 1).0, [10, 10, 10]);
    // as Keras' load_img (Pillow's convert("RGB")): alpha dropped, the hidden colour shows
    let k = decode_rgb_as(
        &d.path().join("la.png"),
        DEFAULT_PIXEL_LIMIT,
        Decoding::Keras,
    )
    .unwrap();
    assert_eq!(k.get_pixel(1, 1).0, [0, 0, 0]);
    assert_eq!(k.get_pixel(6, 1).0, [10, 10, 10]);
    // a palette PNG (indexed colour), written with the png crate
    let path = d.path().join("palette.png");
    {
        let f = std::fs::File::create(&path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 4, 2);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 0, 1, 1, 0, 0, 1, 1]).unwrap();
    }
    let p = decode_rgb(&path, DEFAULT_PIXEL_LIMIT).unwrap();
    assert_eq!(p.get_pixel(0, 0).0, [255, 0, 0]);
    assert_eq!(p.get_pixel(3, 1).0, [0, 0, 255]);
}

#[test]
fn exif_orientation_is_applied() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("rotated.jpg");
    let mut bytes = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 95);
    enc.set_exif_metadata(common::exif_orientation(6)).unwrap();
    let img = halves();
    enc.write_image(img.as_raw(), 32, 16, image::ExtendedColorType::Rgb8)
        .unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let out = decode_rgb(&path, DEFAULT_PIXEL_LIMIT).unwrap();
    // orientation 6: rotate 90 degrees clockwise -> 16 wide, 32 high, red on top
    assert_eq!((out.width(), out.height()), (16, 32));
    assert_reddish(out.get_pixel(8, 4).0, "top after rotation");
    assert_bluish(out.get_pixel(8, 28).0, "bottom after rotation");
    // as Keras' load_img: the stored orientation, 32 wide and 16 high
    let k = decode_rgb_as(&path, DEFAULT_PIXEL_LIMIT, Decoding::Keras).unwrap();
    assert_eq!((k.width(), k.height()), (32, 16));
    assert_eq!(
        k.as_raw(),
        image::load_from_memory(&bytes).unwrap().to_rgb8().as_raw()
    );
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG declaring `w` x `h` pixels with a token IDAT: a decompression-bomb stand-in (a real
/// bomb is a few KB of zeros deflated; the guard must refuse it from the header alone).
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    for (kind, data) in [
        (&b"IDAT"[..], &b"\x78\x9c\x03\x00\x00\x00\x00\x01"[..]),
        (&b"IEND"[..], &b""[..]),
    ] {
        let mut c = kind.to_vec();
        c.extend_from_slice(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    }
    out
}

/// Writes one file of each bad kind into `dir`; returns (name, expected reason fragment).
fn write_bad_files(dir: &Path) -> Vec<(&'static str, &'static str)> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("empty.jpg"), b"").unwrap();
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(halves())
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    std::fs::write(dir.join("truncated.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    let mut corrupt = jpeg.clone();
    for b in corrupt.iter_mut().skip(200).step_by(3) {
        *b = 0xff;
    }
    std::fs::write(dir.join("corrupt.jpg"), &corrupt).unwrap();
    std::fs::write(dir.join("notes.jpg"), b"just some text, not an image").unwrap();
    std::fs::write(dir.join("bomb.png"), bomb_png(100_000, 100_000)).unwrap();
    vec![
        ("empty.jpg", "empty file"),
        ("truncated.jpg", "truncated"),
        ("corrupt.jpg", "corrupt or truncated"),
        ("notes.jpg", "not an image"),
        ("bomb.png", "over the limit of 50000000 pixels"),
    ]
}

#[test]
fn each_bad_file_kind_has_its_reason() {
    let d = tempfile::tempdir().unwrap();
    for (name, reason) in write_bad_files(d.path()) {
        let e = decode_rgb(&d.path().join(name), DEFAULT_PIXEL_LIMIT).expect_err(name);
        assert!(e.to_string().contains(name), "{name}: {e}");
        assert!(
            e.reason().contains(reason),
            "{name}: '{}' lacks '{reason}'",
            e.reason()
        );
    }
    // the bomb is refused before any allocation of its 30 GB
    assert!(matches!(
        decode_rgb(&d.path().join("bomb.png"), DEFAULT_PIXEL_LIMIT),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn inspect_lists_every_bad_file_with_its_reason() {
    let d = tempfile::tempdir().unwrap();
    let bad = write_bad_files(&d.path().join("male/nested"));
    std::fs::create_dir_all(d.path().join("female")).unwrap();
    for i in 0..3 {
        save(
            &DynamicImage::ImageRgb8(halves()),
            &d.path().join(format!("female/{i}.jpg")),
            ImageFormat::Jpeg,
        );
    }
    save(
        &DynamicImage::ImageRgb8(halves()),
        &d.path().join("male/ok.png"),
        ImageFormat::Png,
    );
    let set = LabeledSet::open(d.path()).unwrap();
    let r = inspect(&set, DEFAULT_PIXEL_LIMIT, || {});
    assert_eq!(
        r.classes
            .iter()
            .map(|c| (c.name.as_str(), c.count))
            .collect::<Vec<_>>(),
        vec![("female", 3), ("male", 1)]
    );
    assert_eq!(r.formats.get("jpeg"), Some(&3));
    assert_eq!(r.formats.get("png"), Some(&1));
    assert_eq!(r.bad.len(), bad.len());
    for (name, reason) in bad {
        let b = r
            .bad
            .iter()
            .find(|b| b.path.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not listed"));
        assert!(b.reason.contains(reason), "{name}: {}", b.reason);
    }
}

fn spec() -> InputSpec {
    InputSpec {
        height: 16,
        width: 32,
        preprocessing: Preprocessing::Caffe,
        interpolation: Interpolation::Nearest,
        pixel_limit: DEFAULT_PIXEL_LIMIT,
        decoding: Default::default(),
    }
}

#[test]
fn pipeline_order_is_the_same_for_any_number_of_workers_and_bad_files_follow_the_policy() {
    let d = tempfile::tempdir().unwrap();
    for c in ["a", "b"] {
        std::fs::create_dir_all(d.path().join(c)).unwrap();
        for i in 0..7 {
            let img = DynamicImage::ImageRgb8(ImageBuffer::from_fn(32, 16, |_, _| {
                Rgb([i * 30, if c == "a" { 0 } else { 255 }, 9])
            }));
            save(
                &img,
                &d.path().join(format!("{c}/{i}.png")),
                ImageFormat::Png,
            );
        }
    }
    std::fs::write(d.path().join("b/zz_broken.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let set = LabeledSet::open(d.path()).unwrap();
    let order = epoch_order(set.samples.len(), 3, 1, true);
    let run = |workers: usize| {
        let p = Pipeline {
            spec: spec(),
            batch: 4,
            workers,
            prefetch: 1,
            policy: BadImagePolicy::Skip,
        };
        let log = BadImageLog::default();
        let mut seen = Vec::new();
        p.for_each_batch(&set.samples, &order, &log, |b| -> Result<(), DataError> {
            seen.push((
                b.sample_indices.clone(),
                b.labels.clone(),
                b.pixels.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            ));
            Ok(())
        })
        .unwrap();
        (seen, log.entries())
    };
    let (one, bad1) = run(1);
    let (three, bad3) = run(3);
    assert_eq!(
        one, three,
        "batches must not depend on the number of workers"
    );
    assert_eq!(
        one.iter().map(|b| b.0.len()).sum::<usize>(),
        14,
        "the broken file is skipped"
    );
    assert_eq!(bad1.len(), 1);
    assert_eq!(bad1, bad3);
    assert!(bad1[0].path.ends_with("zz_broken.png"));

    let p = Pipeline {
        spec: spec(),
        batch: 4,
        workers: 2,
        prefetch: 1,
        policy: BadImagePolicy::Fail,
    };
    let err = p
        .for_each_batch(
            &set.samples,
            &order,
            &BadImageLog::default(),
            |_| -> Result<(), DataError> { Ok(()) },
        )
        .expect_err("fail policy stops");
    assert!(err.to_string().contains("zz_broken.png"), "{err}");
}

#[test]
fn train_and_valid_must_share_classes() {
    let d = tempfile::tempdir().unwrap();
    for c in ["train/a", "train/b", "valid/a", "valid/c"] {
        std::fs::create_dir_all(d.path().join(c)).unwrap();
        std::fs::write(d.path().join(c).join("x.jpg"), b"x").unwrap();
    }
    let t = LabeledSet::open(&d.path().join("train")).unwrap();
    let v = LabeledSet::open(&d.path().join("valid")).unwrap();
    let e = t.check_same_classes(&v).unwrap_err().to_string();
    assert!(
        e.contains("[\"a\", \"b\"]") && e.contains("[\"a\", \"c\"]"),
        "{e}"
    );
}

const CELEBA_ATTRS: &str = "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young";

/// 48 images: partitions 0,1,2 by blocks of 16; Male alternates; image 7 missing; row 10 malformed.
fn fake_celeba(root: &Path) {
    let names: Vec<&str> = CELEBA_ATTRS.split(' ').collect();
    let male = names.iter().position(|n| *n == "Male").unwrap();
    std::fs::create_dir_all(root.join("img_align_celeba")).unwrap();
    let mut attr = format!("48\n{CELEBA_ATTRS}\n");
    let mut part = String::new();
    for i in 1..=48usize {
        let file = format!("{i:06}.jpg");
        if i != 7 {
            save(
                &DynamicImage::ImageRgb8(halves()),
                &root.join("img_align_celeba").join(&file),
                ImageFormat::Jpeg,
            );
        }
        let mut vals = vec!["-1"; 40];
        vals[male] = if i.is_multiple_of(2) { "1" } else { "-1" };
        if i == 10 {
            vals.pop(); // malformed: 39 values
        }
        attr.push_str(&format!("{file} {}\n", vals.join(" ")));
        part.push_str(&format!("{file} {}\n", (i - 1) / 16));
    }
    std::fs::write(root.join("list_attr_celeba.txt"), attr).unwrap();
    std::fs::write(root.join("list_eval_partition.txt"), part).unwrap();
}

#[test]
fn celeba_split_is_balanced_respects_partitions_and_reports_problems() {
    let d = tempfile::tempdir().unwrap();
    fake_celeba(d.path());
    let per = [PerClass::Count(5), PerClass::Count(4), PerClass::Count(3)];
    let r = build(
        d.path(),
        "Male",
        &d.path().join("out"),
        per,
        1,
        Layout::Manifest,
    )
    .unwrap();
    assert_eq!(r.classes, vec!["female", "male"]);
    assert_eq!(r.counts, [vec![5, 5], vec![4, 4], vec![3, 3]]);
    let reasons: Vec<String> = r
        .problems
        .iter()
        .map(|p| format!("{} {}: {}", p.file.display(), p.line, p.reason))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|s| s.contains("000007.jpg") && s.contains("listed but missing")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|s| s.contains("list_attr_celeba.txt 12: 39 values for 40 attributes")),
        "{reasons:?}"
    );
    // the split says it is CelebA's aligned set, so its models align faces in `predict`
    let framing = faceattr::data::framing::framing_of(&d.path().join("out/train.csv")).unwrap();
    assert_eq!(framing, faceattr::preprocess::Framing::CelebaAligned);
    for (k, name) in ["train", "valid", "test"].iter().enumerate() {
        let set = LabeledSet::open(&d.path().join("out").join(format!("{name}.csv"))).unwrap();
        for s in &set.samples {
            let i: usize = s
                .path
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(
                (i - 1) / 16,
                k,
                "{} is not in partition {k}",
                s.path.display()
            );
            assert_eq!(s.label, usize::from(i.is_multiple_of(2)), "label of {i}");
        }
    }
    // same seed, same split; another seed, another split
    let again = build(
        d.path(),
        "Male",
        &d.path().join("out2"),
        per,
        1,
        Layout::Manifest,
    )
    .unwrap();
    assert_eq!(again.counts, r.counts);
    let a = std::fs::read_to_string(d.path().join("out/train.csv")).unwrap();
    assert_eq!(
        a,
        std::fs::read_to_string(d.path().join("out2/train.csv")).unwrap()
    );
    build(
        d.path(),
        "Male",
        &d.path().join("out3"),
        per,
        2,
        Layout::Manifest,
    )
    .unwrap();
    assert_ne!(
        a,
        std::fs::read_to_string(d.path().join("out3/train.csv")).unwrap()
    );
    // asking for more than exists is reported, all takes the whole partition
    let r = build(
        d.path(),
        "Eyeglasses",
        &d.path().join("out4"),
        [PerClass::All, PerClass::Count(100), PerClass::All],
        1,
        Layout::Symlinks,
    )
    .unwrap();
    assert_eq!(r.classes, vec!["eyeglasses", "not_eyeglasses"]);
    assert_eq!(r.counts[0], vec![0, 14]);
    assert!(
        r.problems
            .iter()
            .any(|p| p.reason.contains("asked for 100"))
    );
    assert!(
        d.path()
            .join("out4/train/not_eyeglasses/000001.jpg")
            .exists()
    );
    // an unknown attribute is an error naming the file
    let e = build(
        d.path(),
        "Tall",
        &d.path().join("out5"),
        per,
        1,
        Layout::Manifest,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("list_attr_celeba.txt") && e.contains("no attribute 'Tall'"),
        "{e}"
    );
}

/// A picture with detail everywhere, so that any missing part shows.
fn detailed() -> image::RgbImage {
    ImageBuffer::from_fn(96, 64, |x, y| {
        Rgb([(x * 5) as u8, (y * 7) as u8, ((x * y) % 253) as u8])
    })
}

#[test]
fn files_cut_short_are_refused_or_decode_whole() {
    // Every format faceattr reads, cut at every 1/64 of the file and in its last 16 bytes: the
    // cut file is refused, or (a cut only in a trailer after the pixels) decodes to exactly
    // the full picture. Nothing comes back with missing pixels filled in.
    let d = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Gif,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
    ]
    .iter()
    .map(|f| {
        let mut b = Vec::new();
        DynamicImage::ImageRgb8(detailed())
            .write_to(&mut Cursor::new(&mut b), *f)
            .unwrap();
        (format!("{f:?}"), b)
    })
    .collect();
    for fixture in ["progressive.jpg", "cmyk.jpg"] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(fixture);
        cases.push((fixture.to_string(), std::fs::read(p).unwrap()));
    }
    let path = d.path().join("cut");
    for (name, bytes) in &cases {
        let whole = decode_bytes_at(&path, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let n = bytes.len();
        let cuts: std::collections::BTreeSet<usize> = (1..64)
            .map(|k| n * k / 64)
            .chain((1..=16).map(|k| n - k))
            .collect();
        let mut truncated = 0;
        for cut in cuts {
            match decode_bytes_at(&path, &bytes[..cut]) {
                Ok(img) => assert!(
                    img == whole,
                    "{name} cut at {cut} of {n} bytes decoded with pixels missing"
                ),
                Err(e) => {
                    truncated += usize::from(matches!(e, DecodeError::Truncated { .. }));
                }
            }
        }
        if name == "Jpeg" {
            // the JPEG decoder accepts these by itself: the end check is what refuses them
            assert!(
                truncated > 40,
                "{name}: only {truncated} cuts reported as truncated"
            );
        }
        eprintln!("{name}: {truncated} cuts reported as truncated");
    }
}

fn decode_bytes_at(path: &Path, bytes: &[u8]) -> Result<image::RgbImage, DecodeError> {
    faceattr::data::decode::decode_bytes(path, bytes, DEFAULT_PIXEL_LIMIT)
}

#[test]
fn a_truncated_jpeg_is_named_as_such_with_trailing_data_still_fine() {
    let d = tempfile::tempdir().unwrap();
    let mut jpeg = Vec::new();
    DynamicImage::ImageRgb8(detailed())
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    let cut = d.path().join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() * 9 / 10]).unwrap();
    let e = decode_rgb(&cut, DEFAULT_PIXEL_LIMIT).unwrap_err();
    assert!(
        e.reason().starts_with("truncated: the data ends"),
        "{}",
        e.reason()
    );
    assert!(e.to_string().contains("cut.jpg"));
    // bytes after the end-of-image marker (phones append some) are not damage
    let mut appended = jpeg.clone();
    appended.extend_from_slice(b"MotionPhoto_Data and more");
    let ok = d.path().join("appended.jpg");
    std::fs::write(&ok, &appended).unwrap();
    assert!(decode_rgb(&ok, DEFAULT_PIXEL_LIMIT).is_ok());
}
