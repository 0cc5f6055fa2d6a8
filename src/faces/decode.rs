//! YuNet's outputs turned into faces, as OpenCV's `FaceDetectorYN` does it: for each grid
//! cell at strides 8, 16 and 32, score = sqrt(cls x obj) (each clamped to 0..1), a box and
//! five landmarks as offsets from the cell in units of the stride; then a score threshold and
//! greedy non-maximum suppression.

use super::Face;

/// The outputs for one stride, one row per grid cell (row-major, `cols` cells a row).
#[derive(Debug, Clone, PartialEq)]
pub struct StrideOutput {
    pub stride: usize,
    pub rows: usize,
    pub cols: usize,
    /// Classification score per cell.
    pub cls: Vec<f32>,
    /// Objectness per cell.
    pub obj: Vec<f32>,
    /// Four values per cell: centre offsets (x, y) and log-sizes (w, h), in strides.
    pub bbox: Vec<f32>,
    /// Ten values per cell: five (x, y) offsets, in strides.
    pub kps: Vec<f32>,
}

/// YuNet's twelve outputs, grouped by stride (8, 16, 32).
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutput {
    pub levels: Vec<StrideOutput>,
}

/// The score OpenCV gives a cell.
#[inline]
pub fn cell_score(cls: f32, obj: f32) -> f32 {
    (cls.clamp(0.0, 1.0) * obj.clamp(0.0, 1.0)).sqrt()
}

/// Every cell scoring at least `min_score`, decoded, in the detector input's pixels.
pub fn candidates(raw: &RawOutput, min_score: f32) -> Vec<Face> {
    let mut out = Vec::new();
    for level in &raw.levels {
        let s = level.stride as f32;
        for idx in 0..level.rows * level.cols {
            let score = cell_score(level.cls[idx], level.obj[idx]);
            // NaN never passes: a broken output yields no face rather than a garbage one.
            if score.is_nan() || score < min_score {
                continue;
            }
            let (r, c) = ((idx / level.cols) as f32, (idx % level.cols) as f32);
            let b = &level.bbox[idx * 4..idx * 4 + 4];
            let k = &level.kps[idx * 10..idx * 10 + 10];
            let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
            let (w, h) = (b[2].exp() * s, b[3].exp() * s);
            let landmarks = std::array::from_fn(|j| [(c + k[2 * j]) * s, (r + k[2 * j + 1]) * s]);
            let face = Face {
                bbox: [cx - w / 2.0, cy - h / 2.0, w, h],
                score,
                landmarks,
            };
            if face.bbox.iter().all(|v| v.is_finite()) && landmarks_finite(&face) {
                out.push(face);
            }
        }
    }
    out
}

fn landmarks_finite(f: &Face) -> bool {
    f.landmarks.iter().flatten().all(|v| v.is_finite())
}

/// Greedy non-maximum suppression as OpenCV's `NMSBoxes`: the `top_k` best by score (ties in
/// input order), then each face is kept unless it overlaps a kept one by more than `iou`.
/// The result is in descending score order.
pub fn nms(mut faces: Vec<Face>, iou: f32, top_k: usize) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    faces.truncate(top_k);
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| k.iou(&f) <= iou) {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, w: f32, score: f32) -> Face {
        Face {
            bbox: [x, y, w, w],
            score,
            landmarks: [[0.0; 2]; 5],
        }
    }

    #[test]
    fn score_is_the_geometric_mean_of_clamped_outputs() {
        assert_eq!(cell_score(0.81, 1.0), 0.9);
        assert_eq!(cell_score(1.7, 0.25), 0.5);
        assert_eq!(cell_score(-0.1, 0.9), 0.0);
    }

    #[test]
    fn one_cell_decodes_box_and_landmarks_in_pixels() {
        // 2 x 3 grid at stride 16; the cell at row 1, column 2 is the face.
        let mut level = StrideOutput {
            stride: 16,
            rows: 2,
            cols: 3,
            cls: vec![0.0; 6],
            obj: vec![0.0; 6],
            bbox: vec![0.0; 24],
            kps: vec![0.0; 60],
        };
        let idx = 3 + 2;
        level.cls[idx] = 0.95;
        level.obj[idx] = 0.95;
        level.bbox[idx * 4..idx * 4 + 4].copy_from_slice(&[0.5, 0.25, 2f32.ln(), 0.0]);
        level.kps[idx * 10] = -0.5;
        level.kps[idx * 10 + 1] = 1.0;
        let faces = candidates(
            &RawOutput {
                levels: vec![level],
            },
            0.9,
        );
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert!((f.score - 0.95).abs() < 1e-6);
        // centre ((2 + 0.5) * 16, (1 + 0.25) * 16) = (40, 20), size (32, 16)
        assert_eq!(f.bbox, [24.0, 12.0, 32.0, 16.0]);
        assert_eq!(f.landmarks[0], [24.0, 32.0]);
        assert_eq!(f.landmarks[1], [32.0, 16.0]);
    }

    #[test]
    fn nan_outputs_give_no_face() {
        let level = StrideOutput {
            stride: 8,
            rows: 1,
            cols: 1,
            cls: vec![f32::NAN],
            obj: vec![1.0],
            bbox: vec![0.0; 4],
            kps: vec![0.0; 10],
        };
        assert!(
            candidates(
                &RawOutput {
                    levels: vec![level]
                },
                0.0
            )
            .is_empty()
        );
    }

    #[test]
    fn nms_keeps_the_best_of_each_overlapping_group() {
        let faces = vec![
            face(0.0, 0.0, 10.0, 0.91),
            face(1.0, 1.0, 10.0, 0.97), // overlaps the first by 0.68
            face(50.0, 50.0, 10.0, 0.92),
            face(7.0, 0.0, 10.0, 0.95), // overlaps the others by 0.22 and 0.18: kept
        ];
        let kept = nms(faces, 0.3, 5000);
        let scores: Vec<f32> = kept.iter().map(|f| f.score).collect();
        assert_eq!(scores, vec![0.97, 0.95, 0.92]);
    }

    #[test]
    fn nms_top_k_cuts_before_suppression() {
        let faces = vec![face(0.0, 0.0, 10.0, 0.9), face(100.0, 0.0, 10.0, 0.95)];
        assert_eq!(nms(faces, 0.3, 1).len(), 1);
    }
}
