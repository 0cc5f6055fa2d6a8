//! The whole classifier: VGG16 base, the head, and the facts that decide how it is fed and
//! trained (input size, preprocessing, conventions, which layers train).

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::conventions::Conventions;
use super::head::Head;
use super::trainable::TrainableFrom;
use super::vgg16::Vgg16;
use crate::preprocess::{Framing, Interpolation, Preprocessing};
use crate::weights::{WeightSet, WeightsError};

/// Everything about a model except its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Input height and width (Keras order: 218 x 178 for CelebA's aligned crops).
    pub input_hw: (usize, usize),
    pub preprocessing: Preprocessing,
    pub interpolation: Interpolation,
    pub conventions: Conventions,
    pub trainable: TrainableFrom,
    pub class_names: Vec<String>,
    /// How the training images were framed (models saved before faces existed: whole).
    #[serde(default)]
    pub framing: Framing,
    /// How training images were decoded (EXIF, alpha); inference decodes the same way.
    #[serde(default)]
    pub decoding: crate::data::decode::Decoding,
}

#[derive(Debug, Clone)]
pub struct Classifier {
    pub base: Vgg16,
    pub head: Head,
    pub spec: ModelSpec,
}

impl Classifier {
    /// A classifier whose base comes from `ws` and whose head is taken from `ws` when it has
    /// one (a full model), else freshly initialised from `seed`.
    pub fn from_weights(
        ws: &WeightSet,
        hidden: usize,
        spec: ModelSpec,
        seed: u64,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        let base = Vgg16::from_weights(ws, device)?;
        let features = base.feature_dim();
        let head = if ws.contains("dense.weight") {
            Head::from_weights(ws, features, device)?
        } else {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            Head::random(features, hidden, spec.class_names.len(), &mut rng, device)
        };
        Ok(Classifier { base, head, spec })
    }

    /// Logits [N, classes] in inference mode for a preprocessed NCHW batch.
    pub fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.head
            .logits_inference(self.base.features(x), self.spec.conventions)
    }

    /// Per-class sigmoid probabilities [N, classes] in inference mode.
    pub fn probabilities(&self, x: Tensor<4>) -> Tensor<2> {
        sigmoid(self.logits(x))
    }

    /// Output of the frozen prefix (what the feature cache stores).
    pub fn frozen_prefix(&self, x: Tensor<4>) -> Tensor<4> {
        self.base
            .forward_convs(x, 0..self.spec.trainable.first_conv())
    }

    /// Pooled base features [N, channels] from a frozen-prefix output.
    pub fn features_from_prefix(&self, prefix: Tensor<4>) -> Tensor<2> {
        super::layers::global_average_pool(
            self.base
                .forward_convs(prefix, self.spec.trainable.first_conv()..13),
        )
    }

    /// Inference-mode logits from a frozen-prefix output.
    pub fn logits_from_prefix(&self, prefix: Tensor<4>) -> Tensor<2> {
        let feats = self.features_from_prefix(prefix);
        self.head.logits_inference(feats, self.spec.conventions)
    }
}
