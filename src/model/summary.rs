//! The reference article's tables, computed from shapes alone (no tensors are allocated):
//! every layer with its output shape, parameter count and whether it trains, then the
//! total / trainable / non-trainable counts as Keras counts them (BatchNorm's moving
//! statistics are non-trainable).

use serde::Serialize;

use super::architecture::{CONV_LAYER_NAMES, pool_after};
use super::trainable::TrainableFrom;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerRow {
    pub name: String,
    pub kind: String,
    /// Keras order with the batch first: [null, H, W, C] or [null, C].
    pub output_shape: Vec<Option<usize>>,
    pub params: usize,
    pub trainable: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ParamCounts {
    pub total: usize,
    pub trainable: usize,
    pub non_trainable: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub layers: Vec<LayerRow>,
    pub params: ParamCounts,
}

/// Describes VGG16 with `widths`, a head of `hidden` units and `classes` outputs.
pub fn summarize(
    widths: &[usize; 13],
    input_hw: (usize, usize),
    hidden: usize,
    classes: usize,
    trainable: TrainableFrom,
) -> Summary {
    let (mut h, mut w, mut c) = (input_hw.0, input_hw.1, 3usize);
    let mut layers = vec![LayerRow {
        name: "input_1".into(),
        kind: "InputLayer".into(),
        output_shape: vec![None, Some(h), Some(w), Some(c)],
        params: 0,
        trainable: false,
    }];
    let mut block = 1;
    for (i, name) in CONV_LAYER_NAMES.iter().enumerate() {
        let out = widths[i];
        layers.push(LayerRow {
            name: name.to_string(),
            kind: "Conv2D".into(),
            output_shape: vec![None, Some(h), Some(w), Some(out)],
            params: 9 * c * out + out,
            trainable: trainable.is_trainable(i),
        });
        c = out;
        if pool_after(i) {
            h /= 2;
            w /= 2;
            layers.push(LayerRow {
                name: format!("block{block}_pool"),
                kind: "MaxPooling2D".into(),
                output_shape: vec![None, Some(h), Some(w), Some(c)],
                params: 0,
                trainable: trainable.is_trainable(i),
            });
            block += 1;
        }
    }
    let head = [
        ("global_average_pooling2d", "GlobalAveragePooling2D", c, 0),
        ("dense", "Dense", hidden, c * hidden + hidden),
        (
            "batch_normalization",
            "BatchNormalization",
            hidden,
            4 * hidden,
        ),
        ("dense_1", "Dense", classes, hidden * classes + classes),
    ];
    for (name, kind, width, params) in head {
        layers.push(LayerRow {
            name: name.into(),
            kind: kind.into(),
            output_shape: vec![None, Some(width)],
            params,
            trainable: true,
        });
    }
    let total: usize = layers.iter().map(|l| l.params).sum();
    let mut trainable_params: usize = layers
        .iter()
        .filter(|l| l.trainable)
        .map(|l| l.params)
        .sum();
    trainable_params -= 2 * hidden; // BatchNorm's moving mean and variance
    Summary {
        layers,
        params: ParamCounts {
            total,
            trainable: trainable_params,
            non_trainable: total - trainable_params,
        },
    }
}

fn fmt_shape(s: &[Option<usize>]) -> String {
    let parts: Vec<String> = s
        .iter()
        .map(|d| d.map_or("None".to_string(), |v| v.to_string()))
        .collect();
    format!("({})", parts.join(", "))
}

/// Thousands separated by spaces, as the reference article prints them.
pub fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

impl Summary {
    /// The three tables as text: the convolutional base, the head, the parameter counts.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let split = self
            .layers
            .iter()
            .position(|l| l.name == "global_average_pooling2d")
            .unwrap_or(self.layers.len());
        for (title, rows) in [
            ("VGG16 convolutional base", &self.layers[..split]),
            ("Head", &self.layers[split..]),
        ] {
            out.push_str(&format!("{title}\n"));
            out.push_str(&format!(
                "{:<26} {:<24} {:>26} {:>12}  {}\n",
                "Layer", "Type", "Output shape", "Params", "Trains"
            ));
            out.push_str(&format!("{}\n", "-".repeat(100)));
            for l in rows {
                out.push_str(&format!(
                    "{:<26} {:<24} {:>26} {:>12}  {}\n",
                    l.name,
                    l.kind,
                    fmt_shape(&l.output_shape),
                    group_thousands(l.params),
                    if l.trainable { "yes" } else { "no" }
                ));
            }
            out.push('\n');
        }
        out.push_str("Parameters\n");
        out.push_str(&format!("{}\n", "-".repeat(36)));
        out.push_str(&format!(
            "{:<22} {:>13}\n",
            "Total",
            group_thousands(self.params.total)
        ));
        out.push_str(&format!(
            "{:<22} {:>13}\n",
            "Trainable",
            group_thousands(self.params.trainable)
        ));
        out.push_str(&format!(
            "{:<22} {:>13}\n",
            "Non-trainable",
            group_thousands(self.params.non_trainable)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::architecture::VGG16_WIDTHS;

    #[test]
    fn reference_architecture_counts_match_keras() {
        let s = summarize(&VGG16_WIDTHS, (218, 178), 128, 2, TrainableFrom::REFERENCE);
        assert_eq!(
            s.params,
            ParamCounts {
                total: 14_781_122,
                trainable: 7_145_602,
                non_trainable: 7_635_520
            }
        );
        let pool5 = s.layers.iter().find(|l| l.name == "block5_pool").unwrap();
        assert_eq!(pool5.output_shape, vec![None, Some(6), Some(5), Some(512)]);
        assert_eq!(s.layers.len(), 1 + 13 + 5 + 4);
    }

    #[test]
    fn tiny_fixture_counts_match_keras_reference() {
        // keras/reference.json: full_model total 15 846, trainable 7 130, non-trainable 8 716.
        let widths = [4, 4, 8, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16];
        let s = summarize(&widths, (218, 178), 8, 2, TrainableFrom::REFERENCE);
        assert_eq!(
            s.params,
            ParamCounts {
                total: 15_846,
                trainable: 7_130,
                non_trainable: 8_716
            }
        );
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(14_781_122), "14 781 122");
        assert_eq!(group_thousands(512), "512");
    }
}
