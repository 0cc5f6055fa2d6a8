//! The few tensor operations VGG16 and its head are made of, as functions over burn tensors.
//! They work the same on a plain device and on an autodiff one, which is how one forward
//! serves inference, the frozen prefix and the trained suffix.

use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

/// 3x3 'same' convolution (cross-correlation, zero padding 1, stride 1) + bias + ReLU.
pub fn conv3x3_relu(x: Tensor<4>, weight: &Tensor<4>, bias: &Tensor<1>) -> Tensor<4> {
    let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    relu(conv2d(x, weight.clone(), Some(bias.clone()), opts))
}

/// 2x2 max-pool, stride 2, floor ('valid'), as Keras' MaxPooling2D and torch's MaxPool2d(2, 2).
pub fn max_pool2(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([2, 2]))
}

/// Mean over height and width: [N, C, H, W] -> [N, C].
pub fn global_average_pool(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
}

/// x [N, in] @ weight [in, out] + bias [out].
pub fn dense(x: Tensor<2>, weight: &Tensor<2>, bias: &Tensor<1>) -> Tensor<2> {
    let out = bias.dims()[0];
    x.matmul(weight.clone()) + bias.clone().reshape([1, out])
}

pub fn tensor1(v: &[f32], device: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), device)
}

pub fn tensor2(v: &[f32], shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

pub fn tensor4(v: &[f32], shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// A tensor that takes `v`'s buffer (no copy on the CPU).
pub fn tensor_from_vec<const D: usize>(
    v: Vec<f32>,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Runs `f` on a tensor's values as f32, read out once (where [`values`] copies them again
/// into a vector of their own).
pub fn with_values<const D: usize, R>(t: &Tensor<D>, f: impl FnOnce(&[f32]) -> R) -> R {
    let data = t.to_data();
    match data.as_slice::<f32>() {
        Ok(s) => f(s),
        Err(_) => f(&values(t)),
    }
}

/// Copies a tensor's values out as f32, whatever its device.
pub fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    let data = t.to_data();
    match data.as_slice::<f32>() {
        Ok(s) => s.to_vec(),
        Err(_) => data
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap_or_default(),
    }
}
