//! The reference head on top of the pooled VGG16 features:
//! Dense(hidden, relu) -> BatchNormalization -> Dense(classes, sigmoid).

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rand::Rng;

use super::conventions::Conventions;
use super::layers::{dense, tensor1, tensor2, values};
use crate::weights::{NamedTensor, WeightSet, WeightsError};

#[derive(Debug, Clone)]
pub struct Head {
    /// Dense `dense`: [features, hidden].
    pub dense_w: Tensor<2>,
    pub dense_b: Tensor<1>,
    /// BatchNormalization `batch_normalization`.
    pub gamma: Tensor<1>,
    pub beta: Tensor<1>,
    pub moving_mean: Tensor<1>,
    pub moving_var: Tensor<1>,
    /// Dense `dense_1`: [hidden, classes].
    pub out_w: Tensor<2>,
    pub out_b: Tensor<1>,
}

/// Batch statistics of one training forward, for the moving averages.
pub struct BatchStats {
    pub mean: Tensor<1>,
    pub biased_var: Tensor<1>,
    pub batch: usize,
}

pub const TENSOR_NAMES: [&str; 8] = [
    "dense.weight",
    "dense.bias",
    "batch_normalization.gamma",
    "batch_normalization.beta",
    "batch_normalization.moving_mean",
    "batch_normalization.moving_variance",
    "dense_1.weight",
    "dense_1.bias",
];

impl Head {
    /// Keras' initialisers: Glorot-uniform kernels, zero biases, BN gamma 1, beta 0, mean 0, var 1.
    pub fn random(
        features: usize,
        hidden: usize,
        classes: usize,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Self {
        let glorot = |fan_in: usize, fan_out: usize, rng: &mut dyn rand::RngCore| -> Vec<f32> {
            let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
            (0..fan_in * fan_out)
                .map(|_| rng.random_range(-limit..limit))
                .collect()
        };
        Head {
            dense_w: tensor2(&glorot(features, hidden, rng), [features, hidden], device),
            dense_b: tensor1(&vec![0.0; hidden], device),
            gamma: tensor1(&vec![1.0; hidden], device),
            beta: tensor1(&vec![0.0; hidden], device),
            moving_mean: tensor1(&vec![0.0; hidden], device),
            moving_var: tensor1(&vec![1.0; hidden], device),
            out_w: tensor2(&glorot(hidden, classes, rng), [hidden, classes], device),
            out_b: tensor1(&vec![0.0; classes], device),
        }
    }

    pub fn from_weights(
        ws: &WeightSet,
        features: usize,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let w = ws.get("dense.weight", &[Some(features), None])?;
        let hidden = w.shape[1];
        let out = ws.get("dense_1.weight", &[Some(hidden), None])?;
        let classes = out.shape[1];
        let v1 = |name: &str, n: usize| ws.get(name, &[Some(n)]).map(|t| tensor1(&t.data, device));
        Ok(Head {
            dense_w: tensor2(&w.data, [features, hidden], device),
            dense_b: v1("dense.bias", hidden)?,
            gamma: v1("batch_normalization.gamma", hidden)?,
            beta: v1("batch_normalization.beta", hidden)?,
            moving_mean: v1("batch_normalization.moving_mean", hidden)?,
            moving_var: v1("batch_normalization.moving_variance", hidden)?,
            out_w: tensor2(&out.data, [hidden, classes], device),
            out_b: v1("dense_1.bias", classes)?,
        })
    }

    pub fn hidden(&self) -> usize {
        self.dense_w.dims()[1]
    }
    pub fn classes(&self) -> usize {
        self.out_w.dims()[1]
    }

    /// Inference: BatchNorm uses the moving statistics. Returns logits [N, classes].
    pub fn logits_inference(&self, features: Tensor<2>, conv: Conventions) -> Tensor<2> {
        let h = self.bn_inputs(features);
        let n = self.hidden();
        let scale =
            self.gamma.clone() / (self.moving_var.clone().add_scalar(conv.bn_epsilon())).sqrt();
        let h = (h - self.moving_mean.clone().reshape([1, n])) * scale.reshape([1, n])
            + self.beta.clone().reshape([1, n]);
        dense(h, &self.out_w, &self.out_b)
    }

    /// Training: BatchNorm normalises with the batch mean and biased variance. Returns logits
    /// and the batch statistics (without autodiff) for the moving averages.
    pub fn logits_train(&self, features: Tensor<2>, conv: Conventions) -> (Tensor<2>, BatchStats) {
        let h = self.bn_inputs(features);
        let [batch, n] = h.dims();
        let mean = h.clone().mean_dim(0);
        let centred = h - mean.clone();
        let var = (centred.clone() * centred.clone()).mean_dim(0);
        let normed = centred / var.clone().add_scalar(conv.bn_epsilon()).sqrt();
        let h = normed * self.gamma.clone().reshape([1, n]) + self.beta.clone().reshape([1, n]);
        let stats = BatchStats {
            mean: mean.reshape([n]).detach().inner(),
            biased_var: var.reshape([n]).detach().inner(),
            batch,
        };
        (dense(h, &self.out_w, &self.out_b), stats)
    }

    /// What BatchNorm normalises: relu(dense(features)), [N, hidden].
    pub fn bn_inputs(&self, features: Tensor<2>) -> Tensor<2> {
        relu(dense(features, &self.dense_w, &self.dense_b))
    }

    /// Replaces the moving statistics (see `train --bn-recalibrate`).
    pub fn set_moving_stats(&mut self, mean: Tensor<1>, var: Tensor<1>) {
        self.moving_mean = mean;
        self.moving_var = var;
    }

    /// Moves the moving averages towards a batch's statistics.
    pub fn update_moving_stats(&mut self, stats: &BatchStats, conv: Conventions) {
        let f = conv.bn_update_fraction();
        let var = if conv.bn_unbiased_moving_variance() && stats.batch > 1 {
            stats
                .biased_var
                .clone()
                .mul_scalar(stats.batch as f32 / (stats.batch - 1) as f32)
        } else {
            stats.biased_var.clone()
        };
        self.moving_mean =
            self.moving_mean.clone().mul_scalar(1.0 - f) + stats.mean.clone().mul_scalar(f);
        self.moving_var = self.moving_var.clone().mul_scalar(1.0 - f) + var.mul_scalar(f);
    }

    /// The same head with autodiff on and gradients kept for the trainable tensors.
    pub fn trainable_copy(&self) -> Head {
        let t2 = |t: &Tensor<2>| t.clone().autodiff().require_grad();
        let t1 = |t: &Tensor<1>| t.clone().autodiff().require_grad();
        Head {
            dense_w: t2(&self.dense_w),
            dense_b: t1(&self.dense_b),
            gamma: t1(&self.gamma),
            beta: t1(&self.beta),
            moving_mean: self.moving_mean.clone(),
            moving_var: self.moving_var.clone(),
            out_w: t2(&self.out_w),
            out_b: t1(&self.out_b),
        }
    }

    pub fn named_tensors(&self) -> Vec<(String, NamedTensor)> {
        let t = |t: &Tensor<1>| NamedTensor::new(t.dims().to_vec(), values(t));
        let t2 = |t: &Tensor<2>| NamedTensor::new(t.dims().to_vec(), values(t));
        vec![
            (TENSOR_NAMES[0].into(), t2(&self.dense_w)),
            (TENSOR_NAMES[1].into(), t(&self.dense_b)),
            (TENSOR_NAMES[2].into(), t(&self.gamma)),
            (TENSOR_NAMES[3].into(), t(&self.beta)),
            (TENSOR_NAMES[4].into(), t(&self.moving_mean)),
            (TENSOR_NAMES[5].into(), t(&self.moving_var)),
            (TENSOR_NAMES[6].into(), t2(&self.out_w)),
            (TENSOR_NAMES[7].into(), t(&self.out_b)),
        ]
    }
}
