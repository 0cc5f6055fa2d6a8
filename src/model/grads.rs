//! A trainable convolution's gradients as a backward pass hands them to the optimiser: the
//! kernel's as a tensor, or, from the host's Winograd backward, still as the gradient of the
//! transformed kernel, which the update turns into the kernel's block by block.

use burn::tensor::{Device, Tensor};

use super::layers::tensor_from_vec;
use crate::kernels::{conv3x3, winograd};

/// A trainable convolution's gradients from a backward pass.
pub struct LayerGrads {
    pub kernel: KernelGrad,
    pub bias: Tensor<1>,
}

/// The gradient of a trainable convolution's kernel.
pub enum KernelGrad {
    /// OIHW, as the layer's weight.
    Tensor(Tensor<4>),
    /// From the host's Winograd backward, still as the gradient of the transformed kernel.
    Transformed(TransformedGrad),
}

impl KernelGrad {
    /// The gradient as an OIHW tensor, as the layer's weight.
    pub fn into_tensor(self, device: &Device) -> Tensor<4> {
        match self {
            KernelGrad::Tensor(t) => t,
            KernelGrad::Transformed(t) => tensor_from_vec(
                winograd::kernel_grad_from_transformed(&t.du, t.cout, t.cin),
                [t.cout, t.cin, 3, 3],
                device,
            ),
        }
    }
}

/// A kernel's gradient as the Winograd backward leaves it (the gradient of the transformed
/// kernel), with the transformed kernel the forward ran on, whose buffer takes the updated
/// one ([`Self::update`]).
pub struct TransformedGrad {
    /// The gradient of the transformed kernel, `[16][cout][cin]` as the kernel.
    du: Vec<f32>,
    /// The transformed kernel the forward used.
    kernel: Vec<f32>,
    cout: usize,
    cin: usize,
}

impl TransformedGrad {
    /// `du`, the gradient of `kernel` (both `[16][cout][cin]`), the transformed kernel of a
    /// `cout` x `cin` layer.
    pub fn new(du: Vec<f32>, kernel: Vec<f32>, cout: usize, cin: usize) -> Self {
        TransformedGrad {
            du,
            kernel,
            cout,
            cin,
        }
    }

    /// Updates the kernel with this gradient and makes the next forward's kernel from the
    /// result, in one pass ([`winograd::update_kernel`]): `update(gradient, parts)` sees the
    /// gradient of some of the kernel's elements (in OIHW order) with those elements' parts of
    /// each of `arrays` (OIHW arrays of the kernel's size, the kernel first), on all threads.
    /// Returns the transformed new kernel, in the buffer of the one this gradient came from.
    pub fn update<const N: usize>(
        mut self,
        arrays: [&mut [f32]; N],
        update: impl Fn(&[f32], [&mut [f32]; N]) + Sync,
    ) -> conv3x3::Prepared {
        winograd::update_kernel(
            &self.du,
            self.cout,
            self.cin,
            arrays,
            &mut self.kernel,
            update,
        );
        conv3x3::Prepared::Winograd(self.kernel)
    }
}
