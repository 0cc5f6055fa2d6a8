//! Faces: the embedded YuNet against onnxruntime's own outputs, detection on a real photo
//! (at its own size, in a collage at several scales, rotated and mirrored, inside a 6000-pixel
//! picture), alignment checked by detecting again on the crop, and no face where there is none.

mod common;

use std::path::PathBuf;

use faceattr::faces::align::{AlignTemplate, Similarity, warp_bicubic};
use faceattr::faces::decode::RawOutput;
use faceattr::faces::detect::input_tensor;
use faceattr::faces::yunet::Yunet;
use faceattr::faces::{DetectOptions, Face, FaceCropper, FaceDetector, align_face};
use image::RgbImage;

fn astronaut() -> RgbImage {
    let path = common::images().join("astronaut.png");
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn reference() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/yunet/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference.json")).expect("JSON")
}

fn detector() -> FaceDetector {
    FaceDetector::embedded(DetectOptions::default()).expect("embedded YuNet loads")
}

/// The output named `name` (e.g. `kps_16`) out of our grouped outputs.
fn output<'a>(raw: &'a RawOutput, name: &str) -> &'a [f32] {
    let (kind, stride) = name.split_once('_').expect("kind_stride");
    let level = raw
        .levels
        .iter()
        .find(|l| l.stride.to_string() == stride)
        .expect("stride");
    match kind {
        "cls" => &level.cls,
        "obj" => &level.obj,
        "bbox" => &level.bbox,
        "kps" => &level.kps,
        _ => panic!("{name}"),
    }
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

#[test]
fn embedded_model_is_the_readme_file() {
    use sha2::Digest;
    let got = sha2::Sha256::digest(faceattr::faces::yunet::EMBEDDED);
    let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, faceattr::faces::yunet::EMBEDDED_SHA256);
    assert_eq!(reference()["model_sha256"], hex);
}

#[test]
fn every_output_matches_onnxruntime_within_1e_4() {
    let r = reference();
    let names: Vec<String> = r["outputs"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().expect("name").to_string())
        .collect();
    let net = Yunet::embedded().expect("loads");
    let photo = astronaut();
    for case in r["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let img = match name {
            "astronaut_512" => photo.clone(),
            "astronaut_crop_300x400" => {
                image::imageops::crop_imm(&photo, 40, 0, 400, 300).to_image()
            }
            other => panic!("unknown case {other}"),
        };
        let (input, h, w) = input_tensor(&img);
        assert_eq!(
            [h, w],
            [
                case["input_hw"][0].as_u64().unwrap() as usize,
                case["input_hw"][1].as_u64().unwrap() as usize
            ]
        );
        let raw = net.run(&input, h, w).expect("runs");
        let bytes = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/yunet/{name}.bin")),
        )
        .expect("reference outputs");
        let want: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut offset = 0;
        for (out_name, shape) in names.iter().zip(case["shapes"].as_array().expect("shapes")) {
            let n: usize = shape
                .as_array()
                .expect("dims")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .product();
            let got = output(&raw, out_name);
            assert_eq!(got.len(), n, "{name} {out_name}");
            let diff = common::max_abs_diff(got, &want[offset..offset + n]);
            assert!(diff < 1e-4, "{name} {out_name}: max |diff| {diff:e}");
            offset += n;
        }
        assert_eq!(offset, want.len());
    }
}

#[test]
fn astronaut_at_its_own_size_gives_the_readme_face() {
    let faces = detector().detect_unscaled(&astronaut()).expect("detects");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let f = faces[0];
    let best = &reference()["cases"][0]["best"];
    let num = |v: &serde_json::Value| v.as_f64().expect("number") as f32;
    assert!((f.score - 0.9323).abs() < 1e-4, "{}", f.score);
    assert!((f.score - num(&best["score"])).abs() < 1e-5);
    let [x, y, w, h] = f.bbox;
    assert!((x + w / 2.0 - 223.1).abs() < 0.05 && (y + h / 2.0 - 119.6).abs() < 0.05);
    assert!((w - 89.9).abs() < 0.05 && (h - 113.3).abs() < 0.05);
    let readme = [
        [200.1, 101.8],
        [247.1, 102.6],
        [220.4, 124.5],
        [198.6, 142.8],
        [239.7, 143.6],
    ];
    for (got, want) in f.landmarks.iter().zip(readme) {
        assert!(dist(*got, want) < 0.1, "{got:?} vs {want:?}");
    }
}

#[test]
fn a_picture_without_a_face_gives_no_face_and_no_error() {
    let det = detector();
    let flat = RgbImage::from_pixel(300, 200, image::Rgb([120, 130, 140]));
    assert!(det.detect(&flat).expect("runs").is_empty());
    // The astronaut's lower right: her suit and the flag, no face.
    let rest = image::imageops::crop_imm(&astronaut(), 300, 280, 212, 232).to_image();
    assert!(det.detect(&rest).expect("runs").is_empty());
    // Tiny pictures are padded, not refused.
    assert!(det.detect(&RgbImage::new(1, 1)).expect("runs").is_empty());
}

/// The astronaut's face region, and the README face's landmarks inside it.
fn face_patch() -> (RgbImage, [[f32; 2]; 5]) {
    let (x0, y0) = (130u32, 20u32);
    let patch = image::imageops::crop_imm(&astronaut(), x0, y0, 190, 210).to_image();
    let lm = [
        [200.1, 101.8],
        [247.1, 102.6],
        [220.4, 124.5],
        [198.6, 142.8],
        [239.7, 143.6],
    ]
    .map(|[x, y]: [f32; 2]| [x - x0 as f32, y - y0 as f32]);
    (patch, lm)
}

/// Pastes `img` onto `canvas` at (x, y).
fn paste(canvas: &mut RgbImage, img: &RgbImage, x: u32, y: u32) {
    image::imageops::replace(canvas, img, x as i64, y as i64);
}

/// The detected face nearest to `centre`.
fn nearest(faces: &[Face], centre: [f32; 2]) -> Face {
    *faces
        .iter()
        .min_by(|a, b| {
            let c = |f: &Face| [f.bbox[0] + f.bbox[2] / 2.0, f.bbox[1] + f.bbox[3] / 2.0];
            dist(c(a), centre).total_cmp(&dist(c(b), centre))
        })
        .expect("a face")
}

#[test]
fn collage_at_several_scales_rotated_and_mirrored_gives_every_face_with_its_landmarks() {
    let (patch, lm) = face_patch();
    let (pw, ph) = (patch.width() as f32, patch.height() as f32);
    let mut canvas = RgbImage::from_pixel(1400, 800, image::Rgb([90, 90, 90]));
    // (scale, left, top): expected landmarks are the patch's, scaled and moved.
    let mut expected: Vec<[[f32; 2]; 5]> = Vec::new();
    for (scale, x, y) in [(1.0f32, 20u32, 20u32), (0.7, 300, 40), (1.8, 420, 300)] {
        let (w, h) = ((pw * scale).round() as u32, (ph * scale).round() as u32);
        let scaled = image::imageops::resize(&patch, w, h, image::imageops::FilterType::Triangle);
        paste(&mut canvas, &scaled, x, y);
        let (kx, ky) = (w as f32 / pw, h as f32 / ph);
        expected.push(lm.map(|[a, b]| [a * kx + x as f32, b * ky + y as f32]));
    }
    // Rotated by 15 degrees about the patch's centre, drawn into a 260 x 260 square.
    let angle = 15f64.to_radians();
    let (side, rx, ry) = (260u32, 800u32, 40u32);
    let c = [pw as f64 / 2.0, ph as f64 / 2.0];
    // square -> patch: rotate by -angle about the square's centre onto the patch's centre
    let (a, b) = (angle.cos(), -angle.sin());
    let s = side as f64 / 2.0;
    let to_patch = Similarity {
        a,
        b,
        tx: c[0] - (a * s - b * s),
        ty: c[1] - (b * s + a * s),
    };
    let rotated = warp_bicubic(&patch, &to_patch, side as usize, side as usize);
    paste(&mut canvas, &rotated, rx, ry);
    let to_square = to_patch.inverse().expect("invertible");
    expected.push(lm.map(|p| {
        let q = to_square.apply([p[0] as f64, p[1] as f64]);
        [q[0] as f32 + rx as f32, q[1] as f32 + ry as f32]
    }));
    // Mirrored: the person's right eye is now on the image's right, so YuNet's first point
    // (the eye on the image's left) is the mirror image of the original's second, and the
    // mouth corners swap the same way.
    let mirrored = image::imageops::flip_horizontal(&patch);
    let (mx, my) = (1100u32, 300u32);
    paste(&mut canvas, &mirrored, mx, my);
    let flip = |p: [f32; 2]| [pw - p[0] + mx as f32, p[1] + my as f32];
    expected.push([
        flip(lm[1]),
        flip(lm[0]),
        flip(lm[2]),
        flip(lm[4]),
        flip(lm[3]),
    ]);

    let faces = detector().detect(&canvas).expect("detects");
    assert_eq!(faces.len(), expected.len(), "{faces:#?}");
    for (i, want) in expected.iter().enumerate() {
        let centre = [
            want.iter().map(|p| p[0]).sum::<f32>() / 5.0,
            want.iter().map(|p| p[1]).sum::<f32>() / 5.0,
        ];
        let f = nearest(&faces, centre);
        // The eye distance sets the scale of "close": the detector's own landmark noise at
        // these sizes is up to about a sixth of it, while a swapped pair (a wrong mapping under
        // mirroring or rotation) is off by nearly the whole distance.
        let eyes = dist(want[0], want[1]);
        for (k, got) in f.landmarks.iter().enumerate() {
            let d = dist(*got, want[k]);
            assert!(
                d < 0.25 * eyes,
                "copy {i}, landmark {k}: {got:?} vs {:?} ({d:.1} px, eyes {eyes:.0} px apart)",
                want[k]
            );
            let own = (0..5)
                .min_by(|&a, &b| dist(*got, want[a]).total_cmp(&dist(*got, want[b])))
                .expect("five points");
            assert_eq!(
                own, k,
                "copy {i}: landmark {k} lies nearest expected point {own}"
            );
        }
    }
}

#[test]
fn a_6000_pixel_picture_is_detected_small_and_reported_in_its_own_pixels() {
    let (patch, lm) = face_patch();
    let k = 5.0f32;
    let (w, h) = (
        (patch.width() as f32 * k) as u32,
        (patch.height() as f32 * k) as u32,
    );
    let big = image::imageops::resize(&patch, w, h, image::imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(6000, 4000, image::Rgb([200, 200, 200]));
    let (x0, y0) = (3900u32, 1500u32);
    paste(&mut canvas, &big, x0, y0);
    let faces = detector().detect(&canvas).expect("detects");
    assert_eq!(faces.len(), 1, "{faces:?}");
    let f = faces[0];
    let eyes = 5.0 * dist(lm[0], lm[1]);
    for (got, p) in f.landmarks.iter().zip(lm) {
        let want = [p[0] * k + x0 as f32, p[1] * k + y0 as f32];
        assert!(dist(*got, want) < 0.25 * eyes, "{got:?} vs {want:?}");
    }
    assert!(f.bbox[2] > 300.0, "box in original pixels: {:?}", f.bbox);
}

#[test]
fn the_aligned_crop_puts_the_eyes_on_celebas_template() {
    let photo = astronaut();
    let cropper = FaceCropper {
        detector: detector(),
        template: AlignTemplate::celeba(),
    };
    let crops = cropper.crops(&photo).expect("detects");
    assert_eq!(crops.len(), 1);
    let crop = &crops[0].image;
    assert_eq!(crop.dimensions(), (178, 218));
    // Detect again, on the crop itself: the eyes must sit on the template.
    let again = cropper.detector.detect(crop).expect("detects on the crop");
    assert_eq!(again.len(), 1, "{again:?}");
    let t = AlignTemplate::celeba().points;
    for (k, target) in t.iter().take(2).enumerate() {
        let target = [target[0] as f32, target[1] as f32];
        let d = dist(again[0].landmarks[k], target);
        assert!(
            d < 5.0,
            "eye {k}: {:?} is {d:.1} px from {target:?}",
            again[0].landmarks[k]
        );
    }
    // The same crop, scaled template: a 2x crop is the 1x crop at twice the size.
    let big = align_face(&photo, &crops[0].face, &AlignTemplate::for_size(436, 356));
    let again_big = cropper.detector.detect(&big).expect("detects");
    let e = again_big[0].landmarks[0];
    let want = [2.0 * t[0][0] as f32, 2.0 * t[0][1] as f32];
    assert!(dist(e, want) < 10.0, "{e:?} vs {want:?}");
}
