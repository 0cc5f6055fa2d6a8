//! The numerical conventions of the two frameworks faceattr reproduces. They differ in Adam's
//! epsilon and how it enters the update, and in BatchNorm's momentum, epsilon and the variance
//! fed to its moving average; each set matches its framework's defaults to float rounding.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Conventions {
    /// tf.keras 2: Adam eps 1e-7 outside the bias correction; BN momentum 0.99, eps 1e-3,
    /// biased batch variance in the moving average.
    #[default]
    Keras,
    /// PyTorch: Adam eps 1e-8 after bias correction; BN momentum 0.1, eps 1e-5, unbiased
    /// batch variance in the running average.
    Torch,
}

impl Conventions {
    pub fn name(self) -> &'static str {
        match self {
            Conventions::Keras => "keras",
            Conventions::Torch => "torch",
        }
    }
    pub fn adam_epsilon(self) -> f64 {
        match self {
            Conventions::Keras => 1e-7,
            Conventions::Torch => 1e-8,
        }
    }
    /// Weight of the new batch statistic in the moving average.
    pub fn bn_update_fraction(self) -> f32 {
        match self {
            Conventions::Keras => 0.01,
            Conventions::Torch => 0.1,
        }
    }
    pub fn bn_epsilon(self) -> f32 {
        match self {
            Conventions::Keras => 1e-3,
            Conventions::Torch => 1e-5,
        }
    }
    pub fn bn_unbiased_moving_variance(self) -> bool {
        matches!(self, Conventions::Torch)
    }
}
