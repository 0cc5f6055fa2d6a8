//! Test-set figures from predictions and true labels.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
