//! Binary cross-entropy on the sigmoid outputs against one-hot labels, averaged over every
//! output of every sample (Keras' per-sample mean then batch mean, torch's BCELoss 'mean':
//! the same number). Computed from logits, as tf.keras does in `fit`, which is exact where
//! the probability form would round to 0 or 1.

use burn::tensor::Tensor;

/// mean(max(z, 0) - z*y + log(1 + exp(-|z|))) over all elements; a [1] tensor.
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let z = logits;
    let pos = z.clone().clamp_min(0.0);
    let soft = z.clone().abs().neg().exp().log1p();
    (pos - z * targets + soft).mean()
}
