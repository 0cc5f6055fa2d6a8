//! VGG16's convolutional base (no top), as Keras' `vgg16.py` lays it out: five blocks of 3x3
//! 'same' convolutions with ReLU, each closed by a 2x2 max-pool. Layer names are public API:
//! weights are loaded and layers frozen by them. Channel widths come from the weights, so the
//! real network (64…512) and the small test fixtures (4…16) run through the same code.

use std::ops::Range;

use burn::tensor::{Device, Tensor};
use rand::Rng;

use super::layers::{conv3x3_relu, global_average_pool, max_pool2, tensor1, tensor4, values};
use crate::kernels::conv3x3::ConvShape;
use crate::weights::{NamedTensor, WeightSet, WeightsError};

pub use crate::weights::CONV_LAYER_NAMES;

/// The real VGG16's output channels per convolution.
pub const VGG16_WIDTHS: [usize; 13] = [
    64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
];

/// Index of the convolution after which each block's max-pool comes.
const BLOCK_LAST_CONV: [usize; 5] = [1, 3, 6, 9, 12];

/// Which block (1-based) convolution `i` belongs to.
pub fn block_of(i: usize) -> usize {
    BLOCK_LAST_CONV
        .iter()
        .position(|&last| i <= last)
        .map_or(5, |b| b + 1)
}

/// Whether a max-pool follows convolution `i`.
pub fn pool_after(i: usize) -> bool {
    BLOCK_LAST_CONV.contains(&i)
}

#[derive(Debug, Clone)]
pub struct ConvLayer {
    pub weight: Tensor<4>,
    pub bias: Tensor<1>,
}

impl ConvLayer {
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }
    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1]
    }
}

#[derive(Debug, Clone)]
pub struct Vgg16 {
    pub convs: Vec<ConvLayer>,
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
        Ok(Vgg16 { convs })
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
        Vgg16 { convs }
    }

    pub fn widths(&self) -> [usize; 13] {
        std::array::from_fn(|i| self.convs[i].out_channels())
    }

    pub fn feature_dim(&self) -> usize {
        self.convs[12].out_channels()
    }

    /// Runs convolutions `range` (each followed by its block's max-pool where one closes it).
    /// On the CPU without autodiff this is faceattr's own kernels ([`super::host_convs`]).
    pub fn forward_convs(&self, mut x: Tensor<4>, range: Range<usize>) -> Tensor<4> {
        if !range.is_empty() && super::host_convs::applies(&x.device()) {
            return super::host_convs::forward(&self.convs[range.clone()], range.start, x);
        }
        for i in range {
            x = conv3x3_relu(x, &self.convs[i].weight, &self.convs[i].bias);
            if pool_after(i) {
                x = max_pool2(x);
            }
        }
        x
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

/// The shape each convolution from `first` on works on, for `n` images entering it at `hw`
/// with `channels`, the convolutions having `widths` output channels: the max-pools that close
/// blocks halve height and width.
pub fn conv_shapes(
    n: usize,
    hw: (usize, usize),
    channels: usize,
    first: usize,
    widths: &[usize],
) -> Vec<ConvShape> {
    let ((mut h, mut w), mut cin) = (hw, channels);
    widths
        .iter()
        .enumerate()
        .map(|(j, &cout)| {
            let s = ConvShape { n, h, w, cin, cout };
            cin = cout;
            if pool_after(first + j) {
                (h, w) = (h / 2, w / 2);
            }
            s
        })
        .collect()
}

/// Spatial size after the five 2x2 floor pools that follow conv `i` and those before it.
pub fn spatial_after(input: (usize, usize), conv_index: usize) -> (usize, usize) {
    let pools = BLOCK_LAST_CONV
        .iter()
        .filter(|&&last| last <= conv_index)
        .count() as u32;
    (input.0 >> pools, input.1 >> pools)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_pools() {
        assert_eq!(block_of(0), 1);
        assert_eq!(block_of(9), 4);
        assert_eq!(block_of(10), 5);
        assert!(pool_after(9) && !pool_after(10));
        assert_eq!(spatial_after((218, 178), 12), (6, 5));
        assert_eq!(spatial_after((218, 178), 9), (13, 11));
        let shapes = conv_shapes(2, (218, 178), 3, 0, &VGG16_WIDTHS);
        assert_eq!(
            shapes[0],
            ConvShape {
                n: 2,
                h: 218,
                w: 178,
                cin: 3,
                cout: 64
            }
        );
        assert_eq!(
            shapes[2],
            ConvShape {
                n: 2,
                h: 109,
                w: 89,
                cin: 64,
                cout: 128
            }
        );
        assert_eq!(
            shapes[10],
            ConvShape {
                n: 2,
                h: 13,
                w: 11,
                cin: 512,
                cout: 512
            }
        );
    }
}
