//! `faceattr eval`: a trained model on a labelled test set, with everything a person needs to
//! trust it: accuracy, per-class figures, confusion, ROC AUC, calibration, the most confident
//! mistakes, and (on CelebA) accuracy with and without each of the 40 attributes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Serialize;

use super::metrics::{
    Bin, ClassMetrics, argmax, bce_logits, calibration, compute, roc_auc, roc_curve,
};
use super::predict::{predict, predict_faces};
use crate::data::LabeledSet;
use crate::data::bad::BadImage;
use crate::faces::FaceCropper;
use crate::model::Classifier;

#[derive(Debug, Serialize, Clone)]
pub struct Mistake {
    pub path: PathBuf,
    #[serde(rename = "true")]
    pub truth: String,
    pub pred: String,
    /// Probability of the predicted class (normalised over the classes' outputs).
    pub prob: f64,
}

#[derive(Debug, Serialize, Clone)]
pub struct Subgroup {
    pub attribute: String,
    pub acc_with: f64,
    pub n_with: usize,
    pub acc_without: f64,
    pub n_without: usize,
    pub gap: f64,
}

#[derive(Debug, Serialize)]
pub struct EvalReport {
    pub accuracy: f64,
    pub n: usize,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: Vec<Vec<usize>>,
    /// For two classes: AUC of the second class's score; more: macro one-vs-rest.
    pub roc_auc: Option<f64>,
    pub ece: f64,
    pub loss: f64,
    pub worst: Vec<Mistake>,
    pub reliability: Vec<Bin>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subgroups: Vec<Subgroup>,
    /// Photos left out: unreadable, or (with faces) no face found.
    pub unreadable: Vec<BadImage>,
    /// `whole`, or `faces` (each photo's largest face, detected and aligned).
    pub framing: String,
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
    #[serde(skip)]
    pub classes: Vec<String>,
}

/// The normalised probability of each class: sigmoid outputs divided by their sum.
fn normalised(p: &[f32]) -> Vec<f64> {
    let s: f64 = p.iter().map(|&v| v as f64).sum::<f64>().max(1e-12);
    p.iter().map(|&v| v as f64 / s).collect()
}

/// Each photo's per-class logits: of the whole image, or (with `faces`) of its largest face.
fn photo_logits(
    model: &Classifier,
    paths: &[PathBuf],
    faces: Option<&FaceCropper>,
    device: &Device,
    mut on_done: impl FnMut(usize),
) -> Vec<Result<Vec<f32>, BadImage>> {
    match faces {
        None => predict(model, paths, 12, device, on_done)
            .into_iter()
            .map(|p| {
                let logits = p.logits;
                p.probs.map(|_| logits).map_err(|e| BadImage::from(&e))
            })
            .collect(),
        Some(cropper) => predict_faces(model, cropper, paths, 12, device, |_| on_done(1))
            .into_iter()
            .map(|p| {
                let r = p.result?;
                r.largest()
                    .map(|f| f.logits.clone())
                    .ok_or_else(|| BadImage {
                        path: p.path.clone(),
                        reason: "no face found".into(),
                    })
            })
            .collect(),
    }
}

pub fn evaluate(
    model: &Classifier,
    set: &LabeledSet,
    worst_n: usize,
    attributes: Option<&HashMap<String, Vec<(String, bool)>>>,
    faces: Option<&FaceCropper>,
    device: &Device,
    on_done: impl FnMut(usize),
) -> EvalReport {
    let paths: Vec<PathBuf> = set.samples.iter().map(|s| s.path.clone()).collect();
    let preds = photo_logits(model, &paths, faces, device, on_done);
    let (mut truth, mut probs, mut logits, mut kept_paths, mut unreadable) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (s, p) in set.samples.iter().zip(preds) {
        match p {
            Ok(z) => {
                truth.push(s.label);
                probs.push(super::metrics::sigmoid(&z));
                logits.push(z);
                kept_paths.push(s.path.clone());
            }
            Err(bad) => unreadable.push(bad),
        }
    }
    let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let m = compute(&set.classes, &truth, &predicted);
    let k = set.classes.len();
    let (roc_auc, roc) = if k == 2 {
        let scores: Vec<f32> = probs.iter().map(|p| normalised(p)[1] as f32).collect();
        let pos: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        (roc_auc(&scores, &pos), roc_curve(&scores, &pos))
    } else {
        let aucs: Vec<f64> = (0..k)
            .filter_map(|c| {
                let scores: Vec<f32> = probs.iter().map(|p| normalised(p)[c] as f32).collect();
                roc_auc(&scores, &truth.iter().map(|&t| t == c).collect::<Vec<_>>())
            })
            .collect();
        (
            (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64),
            Vec::new(),
        )
    };
    let confidence: Vec<f64> = probs
        .iter()
        .zip(&predicted)
        .map(|(p, &c)| normalised(p)[c])
        .collect();
    let correct: Vec<bool> = truth.iter().zip(&predicted).map(|(t, p)| t == p).collect();
    let (ece, reliability) = calibration(&confidence, &correct, 10);
    let mut wrong: Vec<usize> = (0..truth.len()).filter(|&i| !correct[i]).collect();
    wrong.sort_by(|&a, &b| confidence[b].total_cmp(&confidence[a]));
    let worst = wrong
        .into_iter()
        .take(worst_n)
        .map(|i| Mistake {
            path: kept_paths[i].clone(),
            truth: set.classes[truth[i]].clone(),
            pred: set.classes[predicted[i]].clone(),
            prob: confidence[i],
        })
        .collect();
    let subgroups = attributes
        .map(|a| subgroups(&kept_paths, &correct, a))
        .unwrap_or_default();
    EvalReport {
        accuracy: m.accuracy,
        n: m.n,
        per_class: m.per_class,
        confusion: m.confusion,
        roc_auc,
        ece,
        loss: bce_logits(&logits, &truth),
        worst,
        reliability,
        subgroups,
        unreadable,
        framing: if faces.is_some() { "faces" } else { "whole" }.into(),
        roc,
        classes: set.classes.clone(),
    }
}

/// Reads `list_attr_celeba.txt` into file name -> [(attribute, present)].
pub fn read_attributes(
    path: &Path,
) -> Result<HashMap<String, Vec<(String, bool)>>, crate::data::DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| crate::data::DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = text.lines().skip(1);
    let names: Vec<String> = lines
        .next()
        .ok_or_else(|| crate::data::DataError::Invalid {
            path: path.to_path_buf(),
            reason: "no attribute names on line 2".into(),
        })?
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut out = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != names.len() + 1 {
            continue; // malformed rows are reported by `data celeba`; here they only go unused
        }
        let vals = names
            .iter()
            .zip(&f[1..])
            .map(|(n, v)| (n.clone(), *v == "1"))
            .collect();
        out.insert(f[0].to_string(), vals);
    }
    Ok(out)
}

/// Accuracy with and without each attribute, sorted by the gap, largest first.
pub fn subgroups(
    paths: &[PathBuf],
    correct: &[bool],
    attrs: &HashMap<String, Vec<(String, bool)>>,
) -> Vec<Subgroup> {
    let mut tally: Vec<(String, [usize; 4])> = Vec::new(); // right_with, n_with, right_without, n_without
    for (p, &ok) in paths.iter().zip(correct) {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(vals) = attrs.get(name) else {
            continue;
        };
        for (i, (attr, present)) in vals.iter().enumerate() {
            if tally.len() <= i {
                tally.push((attr.clone(), [0; 4]));
            }
            let t = &mut tally[i].1;
            let o = if *present { 0 } else { 2 };
            t[o] += usize::from(ok);
            t[o + 1] += 1;
        }
    }
    let rate = |r: usize, n: usize| {
        if n == 0 {
            f64::NAN
        } else {
            r as f64 / n as f64
        }
    };
    let mut out: Vec<Subgroup> = tally
        .into_iter()
        .map(|(attribute, t)| {
            let (w, wo) = (rate(t[0], t[1]), rate(t[2], t[3]));
            Subgroup {
                attribute,
                acc_with: w,
                n_with: t[1],
                acc_without: wo,
                n_without: t[3],
                gap: if t[1] > 0 && t[3] > 0 {
                    (w - wo).abs()
                } else {
                    0.0
                },
            }
        })
        .collect();
    out.sort_by(|a, b| b.gap.total_cmp(&a.gap));
    out
}
