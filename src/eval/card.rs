//! The model card: what the model is, what it was trained on, how it did, and its limits.

use crate::eval::report::EvalReport;
use crate::model::saved::ModelMeta;

pub fn render(meta: &ModelMeta, report: Option<&EvalReport>, test_data: Option<&str>) -> String {
    let s = &meta.spec;
    let mut out = String::new();
    out.push_str("# Model card\n\n## What it is\n\n");
    out.push_str(&format!(
        "A {} image classifier (classes: {}) built by faceattr {}: VGG16 convolutional base (widths {}) with global average pooling, Dense({}, relu), BatchNormalization and Dense({}, sigmoid). Input {}x{} (height x width), `{}` preprocessing, `{}` resizing, `{}` numerical conventions. Trained layers: {}. Base weights: {}.\n\n",
        s.class_names.len(),
        s.class_names.join(", "),
        meta.faceattr_version,
        meta.widths.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("/"),
        meta.hidden,
        s.class_names.len(),
        s.input_hw.0,
        s.input_hw.1,
        s.preprocessing.name(),
        match s.interpolation {
            crate::preprocess::Interpolation::Nearest => "nearest",
            crate::preprocess::Interpolation::Bilinear => "bilinear",
        },
        s.conventions.name(),
        meta.trained_layers.join(", "),
        meta.base_weights,
    ));
    out.push_str(match s.framing {
        crate::preprocess::Framing::CelebaAligned => "Trained on faces aligned as CelebA's aligned set (eyes level at fixed points of the crop). `faceattr predict` and `eval` detect each face of a photo with YuNet and align it the same way; a photo without a detectable face gets no answer.\n\n",
        crate::preprocess::Framing::Whole => "Trained on whole images resized to the input: it sees a photo as its training images were framed, so give it photos framed the same way (`--faces detect` aligns faces instead).\n\n",
    });
    out.push_str(match s.decoding {
        crate::data::decode::Decoding::Faceattr => "Images are decoded with their EXIF orientation applied and transparency composited over white.\n\n",
        crate::data::decode::Decoding::Keras => "Images are decoded as Keras' `load_img` does: EXIF orientation ignored, alpha dropped (`train --decoding keras`).\n\n",
    });
    out.push_str("## Training data\n\n");
    match (meta.train_images, &meta.data_fingerprint) {
        (Some(n), Some(f)) => out.push_str(&format!(
            "{n} training images (data fingerprint `{f}`).\n\n"
        )),
        _ => out.push_str("Not recorded.\n\n"),
    }
    out.push_str("## Test figures\n\n");
    match report {
        Some(r) => {
            out.push_str(&format!(
                "On {} ({} images): accuracy {:.2} %, ROC AUC {}, expected calibration error {:.4}, mean loss {:.4}.\n\n",
                test_data.unwrap_or("the test set"),
                r.n,
                100.0 * r.accuracy,
                r.roc_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
                r.ece,
                r.loss
            ));
            out.push_str("| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n");
            for c in &r.per_class {
                out.push_str(&format!(
                    "| {} | {:.4} | {:.4} | {:.4} | {} |\n",
                    c.name, c.precision, c.recall, c.f1, c.support
                ));
            }
            let gaps: Vec<_> = r
                .subgroups
                .iter()
                .filter(|g| g.n_with > 0 && g.n_without > 0)
                .take(8)
                .collect();
            if !gaps.is_empty() {
                out.push_str("\nLargest accuracy gaps between images with and without a CelebA attribute:\n\n| attribute | with | without | gap |\n|---|---|---|---|\n");
                for g in gaps {
                    out.push_str(&format!(
                        "| {} | {:.2} % (n={}) | {:.2} % (n={}) | {:.2} points |\n",
                        g.attribute,
                        100.0 * g.acc_with,
                        g.n_with,
                        100.0 * g.acc_without,
                        g.n_without,
                        100.0 * g.gap
                    ));
                }
            }
            out.push('\n');
        }
        None => {
            out.push_str("Not evaluated yet: run `faceattr eval --model FILE --data TEST`.\n\n")
        }
    }
    out.push_str(
        "## Limits\n\n\
- The labels are CelebA's binary annotations of appearance made by annotators. A face's appearance is not a person's gender; the model cannot know how anyone identifies and must not be used to decide anything about a person.\n\
- Accuracy drops outside the training distribution: aligned, frontal, well-lit, celebrity-like photos. Expect worse results on other ages, ethnicities, poses, occlusions, image quality and cameras; check the subgroup table on your own data.\n\
- Probabilities are sigmoid outputs; check the reliability diagram before reading them as calibrated confidences.\n",
    );
    out
}
