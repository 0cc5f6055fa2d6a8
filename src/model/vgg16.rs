//! VGG16's convolutional base (no top), as Keras' `vgg16.py` lays it out: five blocks of 3x3
//! 'same' convolutions with ReLU, each closed by a 2x2 max-pool. Layer names are public API:
//! weights are loaded and layers frozen by them. Channel widths come from the weights, so the
//! real network (64…512) and the small test fixtures (4…16) run through the same code.

use std::ops::Range;

use burn::tensor::{Device, Tensor};
use rand::Rng;

use super::architecture::{CONV_LAYER_NAMES, ConvLayer};
use super::layers::{global_average_pool, tensor1, tensor4, values};
use crate::weights::{NamedTensor, WeightSet, WeightsError};

#[derive(Debug, Clone)]
pub struct Vgg16 {
    /// The 13 convolutions. Changing a layer's tensors must be followed by
    /// `prepared.forget(layer)`.
    pub convs: Vec<ConvLayer>,
    /// The layers in the form the host kernels or the GPU run them, kept between passes.
    pub prepared: super::prepared::PreparedKernels,
}

impl Vgg16 {
    /// Builds the base from imported weights, checking every shape and value.
    pub fn from_weights(ws: &WeightSet, device: &Device) -> Result<Self, WeightsError> {
        let mut convs = Vec::with_capacity(13);
        let mut in_ch = 3;
        for name in CONV_LAYER_NAMES {
            let w = ws.get(
                &format!("{name}.weight"),
                &[None, Some(in_ch), Some(3), Some(3)],
            )?;
            let out = w.shape[0];
            if out == 0 {
                return Err(WeightsError::malformed(
                    &ws.origin,
                    "weights",
                    format!("{name}.weight has 0 output channels"),
                ));
            }
            let b = ws.get(&format!("{name}.bias"), &[Some(out)])?;
            convs.push(ConvLayer {
                weight: tensor4(&w.data, [out, in_ch, 3, 3], device),
                bias: tensor1(&b.data, device),
            });
            in_ch = out;
        }
        Ok(Vgg16 {
            convs,
            prepared: Default::default(),
        })
    }

    /// Glorot-uniform kernels and zero biases, as Keras initialises Conv2D; seeded.
    pub fn random(widths: &[usize; 13], rng: &mut impl Rng, device: &Device) -> Self {
        let mut in_ch = 3;
        let convs = widths
            .iter()
            .map(|&out| {
                let fan = 9.0 * (in_ch + out) as f32;
                let limit = (6.0 / fan).sqrt();
                let w: Vec<f32> = (0..out * in_ch * 9)
                    .map(|_| rng.random_range(-limit..limit))
                    .collect();
                let layer = ConvLayer {
                    weight: tensor4(&w, [out, in_ch, 3, 3], device),
                    bias: tensor1(&vec![0.0; out], device),
                };
                in_ch = out;
                layer
            })
            .collect();
        Vgg16 {
            convs,
            prepared: Default::default(),
        }
    }

    pub fn widths(&self) -> [usize; 13] {
        std::array::from_fn(|i| self.convs[i].out_channels())
    }

    pub fn feature_dim(&self) -> usize {
        self.convs[12].out_channels()
    }

    /// Runs convolutions `range` (each followed by its block's max-pool where one closes it).
    /// Without autodiff this is faceattr's own kernels on the CPU or cuDNN on the GPU
    /// ([`super::engine`]).
    pub fn forward_convs(&self, x: Tensor<4>, range: Range<usize>) -> Tensor<4> {
        super::engine::Engine::for_device(&x.device()).forward(
            &self.convs,
            range,
            x,
            &self.prepared,
        )
    }

    /// Pooled features [N, C] of a preprocessed NCHW batch.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        global_average_pool(self.forward_convs(x, 0..13))
    }

    /// The same tensors with autodiff on and gradients kept, for convolutions `range`.
    pub fn trainable_copy(&self, range: Range<usize>) -> Vec<ConvLayer> {
        self.convs[range]
            .iter()
            .map(|c| ConvLayer {
                weight: c.weight.clone().autodiff().require_grad(),
                bias: c.bias.clone().autodiff().require_grad(),
            })
            .collect()
    }

    /// Canonical named tensors, for saving.
    pub fn named_tensors(&self) -> Vec<(String, NamedTensor)> {
        let mut out = Vec::new();
        for (name, c) in CONV_LAYER_NAMES.iter().zip(&self.convs) {
            out.push((
                format!("{name}.weight"),
                NamedTensor::new(c.weight.dims().to_vec(), values(&c.weight)),
            ));
            out.push((
                format!("{name}.bias"),
                NamedTensor::new(c.bias.dims().to_vec(), values(&c.bias)),
            ));
        }
        out
    }
}
