//! Test-set figures from predicted probabilities and true labels: accuracy, per-class
//! precision / recall / F1, the confusion matrix, ROC AUC, expected calibration error and the
//! mean loss.

use serde::Serialize;

#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct ClassMetrics {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Serialize, Clone)]
pub struct Metrics {
    pub accuracy: f64,
    pub n: usize,
    pub per_class: Vec<ClassMetrics>,
    /// confusion[true][predicted]
    pub confusion: Vec<Vec<usize>>,
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

pub fn compute(classes: &[String], truth: &[usize], predicted: &[usize]) -> Metrics {
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t][p] += 1;
    }
    let n = truth.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class = (0..k)
        .map(|c| {
            let tp = confusion[c][c];
            let predicted_c: usize = (0..k).map(|t| confusion[t][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(tp, predicted_c);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassMetrics {
                name: classes[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    Metrics {
        accuracy: ratio(correct, n),
        n,
        per_class,
        confusion,
    }
}

/// Area under the ROC curve of `scores` for `positives` (Mann-Whitney U; ties count half).
pub fn roc_auc(scores: &[f32], positives: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (n_pos, n_neg) =
        positives.iter().fold(
            (0usize, 0usize),
            |(p, n), &x| if x { (p + 1, n) } else { (p, n + 1) },
        );
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    // average ranks over ties
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if positives[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos * n_neg) as f64)
}

/// ROC points (false positive rate, true positive rate) from the highest threshold down.
pub fn roc_curve(scores: &[f32], positives: &[bool]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let n_pos = positives.iter().filter(|&&p| p).count().max(1) as f64;
    let n_neg = positives.iter().filter(|&&p| !p).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut pts = vec![(0.0, 0.0)];
    for (k, &i) in idx.iter().enumerate() {
        if positives[i] {
            tp += 1.0
        } else {
            fp += 1.0
        }
        let last_of_tie = idx.get(k + 1).is_none_or(|&n| scores[n] != scores[i]);
        if last_of_tie {
            pts.push((fp / n_neg, tp / n_pos));
        }
    }
    pts
}

/// One reliability-diagram bin: mean confidence, accuracy and count.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct Bin {
    pub confidence: f64,
    pub accuracy: f64,
    pub count: usize,
}

/// Expected calibration error over `bins` equal-width confidence bins, and the bins.
/// Confidence is the predicted class's probability normalised over the classes' outputs.
pub fn calibration(confidence: &[f64], correct: &[bool], bins: usize) -> (f64, Vec<Bin>) {
    let mut acc = vec![(0.0f64, 0usize, 0usize); bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c * bins as f64) as usize).min(bins - 1);
        acc[b].0 += c;
        acc[b].1 += usize::from(ok);
        acc[b].2 += 1;
    }
    let n = confidence.len().max(1) as f64;
    let mut ece = 0.0;
    let out = acc
        .into_iter()
        .map(|(csum, ok, count)| {
            if count == 0 {
                return Bin {
                    confidence: 0.0,
                    accuracy: 0.0,
                    count,
                };
            }
            let (conf, a) = (csum / count as f64, ok as f64 / count as f64);
            ece += count as f64 / n * (conf - a).abs();
            Bin {
                confidence: conf,
                accuracy: a,
                count,
            }
        })
        .collect();
    (ece, out)
}

/// Mean binary cross-entropy of the sigmoid outputs against one-hot labels, from the logits
/// (as tf.keras computes it, exact where a probability would round to 0 or 1): the mean of
/// max(z, 0) - z*y + ln(1 + exp(-|z|)) over every output of every sample. The one loss figure
/// of faceattr: history's `val_loss` and `eval`'s `loss` both come from here (training's
/// gradients use the same formula on tensors, `train::loss`).
pub fn bce_logits(logits: &[Vec<f32>], truth: &[usize]) -> f64 {
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for (row, &t) in logits.iter().zip(truth) {
        for (c, &z) in row.iter().enumerate() {
            let (z, y) = (z as f64, f64::from(u8::from(c == t)));
            sum += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
            n += 1;
        }
    }
    sum / n.max(1) as f64
}

/// Per-class sigmoid probabilities of a row of logits.
pub fn sigmoid(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|&z| 1.0 / (1.0 + (-z).exp())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_from_logits_matches_the_probability_form_and_stays_exact_when_saturated() {
        let logits = vec![vec![2.0f32, -1.0], vec![-0.5, 0.25]];
        let truth = [0, 1];
        let mut want = 0.0f64;
        for (row, &t) in logits.iter().zip(&truth) {
            for (c, &z) in row.iter().enumerate() {
                let p = 1.0 / (1.0 + (-(z as f64)).exp());
                want -= if c == t { p.ln() } else { (1.0 - p).ln() };
            }
        }
        assert!((bce_logits(&logits, &truth) - want / 4.0).abs() < 1e-12);
        // a confidently wrong output of logit 40: the loss is 40, where clipping p at
        // 1 - 1e-7 would give 16.1
        let l = bce_logits(&[vec![40.0f32]], &[1]);
        assert!((l - 40.0).abs() < 1e-9, "{l}");
        assert_eq!(sigmoid(&[0.0])[0], 0.5);
    }

    #[test]
    fn figures_of_a_small_confusion() {
        let classes = vec!["a".to_string(), "b".to_string()];
        // truth a a a b b, predicted a b a b a
        let m = compute(&classes, &[0, 0, 0, 1, 1], &[0, 1, 0, 1, 0]);
        assert_eq!(m.confusion, vec![vec![2, 1], vec![1, 1]]);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert!((m.per_class[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[1].precision - 0.5).abs() < 1e-12);
        assert_eq!(m.per_class[1].support, 2);
    }

    #[test]
    fn auc_by_counting_pairs() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.4];
        let p = [false, false, true, true, true];
        // pairs (pos, neg): (0.35,0.1)=1 (0.35,0.4)=0 (0.8,*)=2 (0.4,0.1)=1 (0.4,0.4)=0.5 -> 4.5/6
        assert!((roc_auc(&s, &p).unwrap() - 4.5 / 6.0).abs() < 1e-12);
        assert_eq!(roc_auc(&s, &[true; 5]), None);
        let c = roc_curve(&s, &p);
        assert_eq!(c.first(), Some(&(0.0, 0.0)));
        assert_eq!(c.last(), Some(&(1.0, 1.0)));
    }

    #[test]
    fn calibration_error_of_known_bins() {
        // two samples at 0.95 (one right), two at 0.55 (both right)
        let (ece, bins) = calibration(&[0.95, 0.95, 0.55, 0.55], &[true, false, true, true], 10);
        assert!((ece - (0.5 * 0.45 + 0.5 * 0.45)).abs() < 1e-12);
        assert_eq!(bins[9].count, 2);
        assert_eq!(bins[5].accuracy, 1.0);
    }
}
