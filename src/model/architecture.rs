//! VGG16's layer plan, as Keras' `vgg16.py` lays it out: 13 convolutions under their Keras
//! names, their widths, the five blocks each closed by a 2x2 max-pool, and the shapes each
//! convolution works on. Used by the burn model ([`super::vgg16`]), faceattr's own kernels
//! ([`super::host_convs`]), the summary, training and the benchmarks.

use burn::tensor::Tensor;

use crate::kernels::conv3x3::ConvShape;

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
