//! Alignment the way the CelebA authors made their aligned set (`align_face_celeba`, MATLAB):
//! a non-reflective similarity (rotation, one scale, translation) fitted by least squares from
//! three points of the photo (the eye on the image's left, the other eye, the midpoint of the
//! mouth corners) to fixed points of a 178 x 218 crop, then a bicubic resampling with the
//! border replicated.
//!
//! As MATLAB's `cp2tform(photo, template, 'nonreflective similarity')` does, the fit is the
//! map from the crop to the photo with its residuals measured in the photo, and that same map
//! is what the resampling walks. Coordinates are continuous (pixel `i` covers `[i, i + 1)`),
//! so MATLAB's 1-based pixel centre `p` is `p - 0.5` here.

use image::RgbImage;

use super::Face;

/// The aligned crop's size, height x width.
pub const CELEBA_HW: (usize, usize) = (218, 178);

/// Where the left eye, right eye and mouth midpoint go, in MATLAB's 1-based pixel coordinates
/// of the 178 x 218 crop ("left" is the eye on the image's left).
pub const CELEBA_POINTS_1BASED: [[f64; 2]; 3] =
    [[70.745, 112.0], [108.237, 112.0], [89.432, 153.514]];

/// Above this many photo pixels per crop pixel, the photo is first reduced with an
/// antialiasing filter: plain bicubic sampling would alias (CelebA's photos seldom needed it).
const MAX_PLAIN_REDUCTION: f64 = 2.0;

/// The output size and the three target points (continuous coordinates).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignTemplate {
    pub height: usize,
    pub width: usize,
    pub points: [[f64; 2]; 3],
}

impl AlignTemplate {
    /// CelebA's own: 178 x 218.
    pub fn celeba() -> Self {
        Self::for_size(CELEBA_HW.0, CELEBA_HW.1)
    }

    /// CelebA's template scaled to another crop size (e.g. a model's `--input`).
    pub fn for_size(height: usize, width: usize) -> Self {
        let (sx, sy) = (
            width as f64 / CELEBA_HW.1 as f64,
            height as f64 / CELEBA_HW.0 as f64,
        );
        AlignTemplate {
            height,
            width,
            points: CELEBA_POINTS_1BASED.map(|[x, y]| [(x - 0.5) * sx, (y - 0.5) * sy]),
        }
    }
}

/// `p -> z p + t` with z = a + ib (complex numbers): rotation and one scale, no reflection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    /// The least-squares similarity taking each `from[i]` to `to[i]`. `from` must not be all
    /// one point (a template never is).
    pub fn fit(from: &[[f64; 2]], to: &[[f64; 2]]) -> Similarity {
        let n = from.len().min(to.len()).max(1) as f64;
        let mean = |p: &[[f64; 2]]| {
            let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| (x + q[0], y + q[1]));
            [sx / n, sy / n]
        };
        let (mf, mt) = (mean(from), mean(to));
        let (mut re, mut im, mut norm) = (0.0, 0.0, 0.0);
        for (f, t) in from.iter().zip(to) {
            let (fx, fy) = (f[0] - mf[0], f[1] - mf[1]);
            let (gx, gy) = (t[0] - mt[0], t[1] - mt[1]);
            // conj(f) * g
            re += fx * gx + fy * gy;
            im += fx * gy - fy * gx;
            norm += fx * fx + fy * fy;
        }
        let (a, b) = if norm > 0.0 {
            (re / norm, im / norm)
        } else {
            (0.0, 0.0)
        };
        Similarity {
            a,
            b,
            tx: mt[0] - (a * mf[0] - b * mf[1]),
            ty: mt[1] - (b * mf[0] + a * mf[1]),
        }
    }

    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// The scale factor |z|.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// The rotation in degrees (counter-clockwise in image coordinates, y down).
    pub fn rotation_degrees(&self) -> f64 {
        self.b.atan2(self.a).to_degrees()
    }

    pub fn inverse(&self) -> Option<Similarity> {
        let d = self.a * self.a + self.b * self.b;
        if !d.is_finite() || d <= 0.0 {
            return None;
        }
        let (a, b) = (self.a / d, -self.b / d);
        Some(Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        })
    }
}

/// The three photo points the fit uses: the eye on the image's left (YuNet's first point), the
/// other eye, and the midpoint of the two mouth corners.
pub fn anchor_points(face: &Face) -> [[f64; 2]; 3] {
    let p = |i: usize| [face.landmarks[i][0] as f64, face.landmarks[i][1] as f64];
    let (m1, m2) = (p(3), p(4));
    [p(0), p(1), [(m1[0] + m2[0]) / 2.0, (m1[1] + m2[1]) / 2.0]]
}

/// The map from crop coordinates to photo coordinates for `face`.
pub fn crop_to_photo(face: &Face, template: &AlignTemplate) -> Similarity {
    Similarity::fit(&template.points, &anchor_points(face))
}

/// The aligned crop of `face` (template.width x template.height).
pub fn align_face(img: &RgbImage, face: &Face, template: &AlignTemplate) -> RgbImage {
    let map = crop_to_photo(face, template);
    let reduction = map.scale();
    if reduction <= MAX_PLAIN_REDUCTION || img.width() < 2 || img.height() < 2 {
        return warp_bicubic(img, &map, template.width, template.height);
    }
    // Reduce only the part of the photo the crop covers, to about one photo pixel per crop
    // pixel, with an antialiasing filter; then resample as usual.
    let (x0, y0, x1, y1) = footprint(&map, template, img.width(), img.height());
    let part = image::imageops::crop_imm(img, x0, y0, x1 - x0, y1 - y0).to_image();
    let (pw, ph) = (
        ((part.width() as f64 / reduction).round() as u32).max(1),
        ((part.height() as f64 / reduction).round() as u32).max(1),
    );
    let small = crate::preprocess::resample(&part, pw, ph);
    let (kx, ky) = (
        pw as f64 / part.width() as f64,
        ph as f64 / part.height() as f64,
    );
    // photo -> reduced part: x' = (x - x0) * kx (kx and ky differ from 1/reduction only by
    // rounding; the map keeps its exact form by folding them in per axis).
    let warp = |u: f64, v: f64| {
        let [x, y] = map.apply([u, v]);
        [(x - x0 as f64) * kx, (y - y0 as f64) * ky]
    };
    warp_with(&small, warp, template.width, template.height)
}

/// The photo rectangle (clamped, with a margin for the bicubic taps) the crop samples from.
fn footprint(map: &Similarity, t: &AlignTemplate, w: u32, h: u32) -> (u32, u32, u32, u32) {
    let corners = [
        [0.0, 0.0],
        [t.width as f64, 0.0],
        [0.0, t.height as f64],
        [t.width as f64, t.height as f64],
    ]
    .map(|c| map.apply(c));
    let lo = |i: usize| corners.iter().map(|c| c[i]).fold(f64::INFINITY, f64::min);
    let hi = |i: usize| {
        corners
            .iter()
            .map(|c| c[i])
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let clamp = |v: f64, max: u32| (v.max(0.0).min(max as f64)) as u32;
    let margin = 2.0 * map.scale() + 3.0;
    let (x0, x1) = (clamp(lo(0) - margin, w - 1), clamp(hi(0) + margin + 1.0, w));
    let (y0, y1) = (clamp(lo(1) - margin, h - 1), clamp(hi(1) + margin + 1.0, h));
    (x0, y0, x1.max(x0 + 1), y1.max(y0 + 1))
}

/// Resamples `img` at `map(crop pixel centre)` for every crop pixel, bicubic (Keys, a = -0.5,
/// MATLAB's `cubic`), the border replicated.
pub fn warp_bicubic(img: &RgbImage, map: &Similarity, width: usize, height: usize) -> RgbImage {
    warp_with(img, |u, v| map.apply([u, v]), width, height)
}

fn warp_with(
    img: &RgbImage,
    map: impl Fn(f64, f64) -> [f64; 2],
    width: usize,
    height: usize,
) -> RgbImage {
    let (sw, sh) = (img.width() as i64, img.height() as i64);
    let src = img.as_raw();
    let mut out = RgbImage::new(width as u32, height as u32);
    for (v, row) in out.chunks_mut(width * 3).enumerate() {
        for u in 0..width {
            let [x, y] = map(u as f64 + 0.5, v as f64 + 0.5);
            // continuous -> 0-based pixel-centre coordinates
            let (x, y) = (x - 0.5, y - 0.5);
            let px = if x.is_finite() { x } else { 0.0 };
            let py = if y.is_finite() { y } else { 0.0 };
            let (fx, fy) = (px.floor(), py.floor());
            let wx = cubic_weights(px - fx);
            let wy = cubic_weights(py - fy);
            let (ix, iy) = (
                fx.clamp(-4.0, sw as f64 + 4.0) as i64,
                fy.clamp(-4.0, sh as f64 + 4.0) as i64,
            );
            let mut acc = [0.0f64; 3];
            for (j, wyj) in wy.iter().enumerate() {
                let yy = (iy - 1 + j as i64).clamp(0, sh - 1) as usize;
                for (i, wxi) in wx.iter().enumerate() {
                    let xx = (ix - 1 + i as i64).clamp(0, sw - 1) as usize;
                    let o = (yy * sw as usize + xx) * 3;
                    let w = wyj * wxi;
                    for c in 0..3 {
                        acc[c] += w * src[o + c] as f64;
                    }
                }
            }
            for c in 0..3 {
                row[u * 3 + c] = acc[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Keys' cubic convolution weights (a = -0.5) for the four taps at -1, 0, 1, 2 around a point
/// `t` (0..1) past the second.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.5;
    let near = |d: f64| ((A + 2.0) * d - (A + 3.0)) * d * d + 1.0;
    let far = |d: f64| ((A * d - 5.0 * A) * d + 8.0 * A) * d - 4.0 * A;
    [far(1.0 + t), near(t), near(1.0 - t), far(2.0 - t)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face_with(points: [[f32; 2]; 5]) -> Face {
        Face {
            bbox: [0.0, 0.0, 1.0, 1.0],
            score: 1.0,
            landmarks: points,
        }
    }

    #[test]
    fn fit_recovers_an_exact_similarity() {
        let truth = Similarity {
            a: 1.3 * 0.4f64.cos(),
            b: 1.3 * 0.4f64.sin(),
            tx: 17.0,
            ty: -4.5,
        };
        let from = [[10.0, 20.0], [50.0, 22.0], [31.0, 70.0]];
        let to = from.map(|p| truth.apply(p));
        let fit = Similarity::fit(&from, &to);
        for (got, want) in [
            (fit.a, truth.a),
            (fit.b, truth.b),
            (fit.tx, truth.tx),
            (fit.ty, truth.ty),
        ] {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        let inv = fit.inverse().expect("invertible");
        let back = inv.apply(fit.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-9 && (back[1] - 4.0).abs() < 1e-9);
    }

    #[test]
    fn fit_is_least_squares_and_never_reflects() {
        // A mirrored triangle cannot be reached without reflection: the best non-reflective
        // fit has a positive determinant (a^2 + b^2) and leaves residuals.
        let from = [[0.0, 0.0], [10.0, 0.0], [5.0, 8.0]];
        let to = [[0.0, 0.0], [-10.0, 0.0], [-5.0, 8.0]];
        let fit = Similarity::fit(&from, &to);
        let res: f64 = from
            .iter()
            .zip(&to)
            .map(|(f, t)| {
                let p = fit.apply(*f);
                (p[0] - t[0]).powi(2) + (p[1] - t[1]).powi(2)
            })
            .sum();
        assert!(res > 1.0);
        // Any small change of the parameters does not lower the residual.
        for d in [[1e-3, 0.0], [0.0, 1e-3], [-1e-3, 0.0], [0.0, -1e-3]] {
            let g = Similarity {
                a: fit.a + d[0],
                b: fit.b + d[1],
                ..fit
            };
            let r2: f64 = from
                .iter()
                .zip(&to)
                .map(|(f, t)| {
                    let p = g.apply(*f);
                    (p[0] - t[0]).powi(2) + (p[1] - t[1]).powi(2)
                })
                .sum();
            assert!(r2 >= res - 1e-9);
        }
    }

    #[test]
    fn template_is_celeba_minus_half_a_pixel_and_scales() {
        let t = AlignTemplate::celeba();
        assert_eq!((t.height, t.width), (218, 178));
        assert!((t.points[0][0] - 70.245).abs() < 1e-12);
        assert!((t.points[2][1] - 153.014).abs() < 1e-12);
        let big = AlignTemplate::for_size(436, 356);
        assert!((big.points[1][0] - 2.0 * (108.237 - 0.5)).abs() < 1e-9);
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            let w = cubic_weights(t);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn identity_warp_copies_pixels_and_replicates_the_border() {
        let img = RgbImage::from_fn(6, 5, |x, y| image::Rgb([(x * 40) as u8, (y * 50) as u8, 9]));
        let id = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        };
        assert_eq!(warp_bicubic(&img, &id, 6, 5), img);
        let shifted = Similarity {
            a: 1.0,
            b: 0.0,
            tx: -3.0,
            ty: 0.0,
        };
        let out = warp_bicubic(&img, &shifted, 6, 5);
        // Columns left of the photo repeat its first column.
        for y in 0..5 {
            assert_eq!(out.get_pixel(0, y), img.get_pixel(0, y));
            assert_eq!(out.get_pixel(4, y), img.get_pixel(1, y));
        }
    }

    #[test]
    fn a_face_drawn_at_the_template_points_maps_onto_them() {
        // Landmarks exactly at twice the template (a photo at 2x): the fit is an exact 2x
        // scale, the eyes land on the template, and the photo's red eye pixel lands on them.
        let t = AlignTemplate::celeba();
        let p = t.points.map(|[x, y]| [(2.0 * x) as f32, (2.0 * y) as f32]);
        let mouth = p[2];
        let face = face_with([
            p[0],
            p[1],
            [0.0, 0.0],
            [mouth[0] - 20.0, mouth[1]],
            [mouth[0] + 20.0, mouth[1]],
        ]);
        let map = crop_to_photo(&face, &t);
        assert!((map.scale() - 2.0).abs() < 1e-5 && map.rotation_degrees().abs() < 1e-4);
        let mut img = RgbImage::from_pixel(356, 436, image::Rgb([0, 0, 0]));
        let (ex, ey) = (p[0][0].floor() as u32, p[0][1].floor() as u32);
        for y in ey - 2..ey + 3 {
            for x in ex - 2..ex + 3 {
                img.put_pixel(x, y, image::Rgb([255, 0, 0]));
            }
        }
        let crop = align_face(&img, &face, &t);
        let (cx, cy) = (t.points[0][0].floor() as u32, t.points[0][1].floor() as u32);
        assert!(
            crop.get_pixel(cx, cy).0[0] > 200,
            "{:?}",
            crop.get_pixel(cx, cy)
        );
        assert!(crop.get_pixel(cx + 6, cy).0[0] < 30);
    }

    #[test]
    fn a_large_reduction_is_prefiltered_not_aliased() {
        // A fine 1-pixel checkerboard seen at 8x reduction must come out mid-grey, not as a
        // moire of black and white.
        let img = RgbImage::from_fn(2000, 2400, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let t = AlignTemplate::celeba();
        let p = t
            .points
            .map(|[x, y]| [(8.0 * x) as f32 + 100.0, (8.0 * y) as f32 + 100.0]);
        let face = face_with([p[0], p[1], [0.0, 0.0], p[2], p[2]]);
        let crop = align_face(&img, &face, &t);
        let vals: Vec<f64> = crop.pixels().map(|q| q.0[0] as f64).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let spread = vals.iter().map(|v| (v - mean).abs()).fold(0.0, f64::max);
        assert!(
            (mean - 127.5).abs() < 10.0 && spread < 40.0,
            "mean {mean} spread {spread}"
        );
    }
}
