//! VGG16's layers on the GPU: 3x3 'same' convolution with bias and ReLU, and the 2x2
//! max-pool closing a block, forward for inference and for training (keeping what the
//! backward pass needs on the card), and that backward pass. Activations are NHWC device
//! buffers; the caller hands NHWC host data in and gets NHWC host data back.

use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::GpuError;
use super::cuda::{Cuda, State, addr, addr_mut};
use super::cudnn::{self, ConvShapes, Pass, TensorDesc};
use crate::kernels::layout;

/// One convolution's kernel (`[cout, 3, 3, cin]`) and bias on the card.
pub struct GpuLayer {
    w: CudaSlice<f32>,
    bias: CudaSlice<f32>,
    cout: usize,
    cin: usize,
}

impl std::fmt::Debug for GpuLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuLayer({} <- {})", self.cout, self.cin)
    }
}

/// `[cout, cin, 3, 3]` (burn's and PyTorch's layout) to `[cout, 3, 3, cin]` (cuDNN's NHWC
/// filter layout): each output channel's `[cin][9]` transposed, as an NCHW -> NHWC transpose.
pub fn oihw_to_ohwi(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    layout::nchw_to_nhwc(w, [cout, cin, 3, 3])
}

/// The inverse of [`oihw_to_ohwi`].
pub fn ohwi_to_oihw(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    layout::nhwc_to_nchw(w, [cout, 3, 3, cin])
}

/// An NHWC activation on the card.
struct Buf {
    data: CudaSlice<f32>,
    /// n, h, w, c
    dims: [usize; 4],
}

impl Buf {
    fn len(dims: [usize; 4]) -> usize {
        dims.iter().product()
    }
}

/// `relu(conv(x) + bias)`.
fn conv(st: &mut State, layer: &GpuLayer, x: &Buf) -> Result<Buf, GpuError> {
    let [n, h, w, cin] = x.dims;
    let descs = ConvShapes::new(x.dims, layer.cout, st.precision)?;
    let algo = st.algo(Pass::Forward, [n, h, w, cin, layer.cout], &descs)?;
    let workspace = st.workspace(algo.workspace)?;
    let dims = [n, h, w, layer.cout];
    let mut y = st.alloc(Buf::len(dims))?;
    let s = &st.stream;
    // SAFETY: every buffer has the size its descriptor gives, on this stream
    unsafe {
        cudnn::conv_forward(
            &st.handle,
            &descs,
            algo,
            addr(&x.data, s),
            addr(&layer.w, s),
            workspace,
            addr_mut(&mut y, s),
        )?;
        cudnn::bias_relu(
            &st.handle,
            &descs,
            &st.relu,
            addr(&layer.bias, s),
            addr_mut(&mut y, s),
        )?;
    }
    Ok(Buf { data: y, dims })
}

/// The 2x2 max-pool.
fn pool(st: &State, x: &Buf) -> Result<Buf, GpuError> {
    let [n, h, w, c] = x.dims;
    let dims = [n, h / 2, w / 2, c];
    let mut y = st.alloc(Buf::len(dims))?;
    let s = &st.stream;
    // SAFETY: as in `conv`
    unsafe {
        cudnn::pool_forward(
            &st.handle,
            &st.pool,
            &TensorDesc::nhwc(x.dims)?,
            addr(&x.data, s),
            &TensorDesc::nhwc(dims)?,
            addr_mut(&mut y, s),
        )?;
    }
    Ok(Buf { data: y, dims })
}

/// What the backward pass needs from one trainable layer's forward.
struct Saved {
    layer: Arc<GpuLayer>,
    input: Buf,
    /// The output (after ReLU) where a max-pool follows it.
    pre_pool: Option<Buf>,
}

/// A layer's kernel gradient (`[cout, cin, 3, 3]`) and bias gradient, on the host.
pub type LayerGradients = (Vec<f32>, Vec<f32>);

/// The trainable layers' forward pass, kept on the card for [`Tape::backward`].
pub struct Tape {
    gpu: Arc<Cuda>,
    layers: Vec<Saved>,
    last: Buf,
}

impl Cuda {
    /// Puts a layer's kernel (`[cout, cin, 3, 3]`) and bias on the card.
    pub fn upload_layer(
        &self,
        weight: &[f32],
        bias: &[f32],
        cout: usize,
        cin: usize,
    ) -> Result<GpuLayer, GpuError> {
        let st = self.lock();
        Ok(GpuLayer {
            w: st.upload(&oihw_to_ohwi(weight, cout, cin))?,
            bias: st.upload(bias)?,
            cout,
            cin,
        })
    }

    /// Inference forward of `layers` (each with whether a max-pool follows) on an NHWC batch
    /// `x` of shape `dims`; the NHWC output and its shape.
    pub fn forward(
        &self,
        layers: &[(Arc<GpuLayer>, bool)],
        x: &[f32],
        dims: [usize; 4],
    ) -> Result<(Vec<f32>, [usize; 4]), GpuError> {
        if dims[0] == 0 {
            // cuDNN refuses empty tensors; the output's shape is known without it
            let out = layers.iter().fold(dims, |[n, h, w, _], (layer, pooled)| {
                let (h, w) = if *pooled { (h / 2, w / 2) } else { (h, w) };
                [n, h, w, layer.cout]
            });
            return Ok((Vec::new(), out));
        }
        let mut st = self.lock();
        let mut a = Buf {
            data: st.upload(x)?,
            dims,
        };
        for (layer, pooled) in layers {
            check_input(layer, &a)?;
            a = conv(&mut st, layer, &a)?;
            if *pooled {
                a = pool(&st, &a)?;
            }
        }
        Ok((st.download(&a.data)?, a.dims))
    }

    /// Training forward of `layers` from the frozen prefix's NHWC output: the last layer's
    /// (pooled) NHWC output on the host, its shape, and the tape for the backward pass.
    pub fn forward_train(
        self: &Arc<Self>,
        layers: &[(Arc<GpuLayer>, bool)],
        x: &[f32],
        dims: [usize; 4],
    ) -> Result<(Vec<f32>, [usize; 4], Tape), GpuError> {
        let mut st = self.lock();
        let mut a = Buf {
            data: st.upload(x)?,
            dims,
        };
        let mut saved = Vec::with_capacity(layers.len());
        for (layer, pooled) in layers {
            check_input(layer, &a)?;
            let output = conv(&mut st, layer, &a)?;
            let (next, pre_pool) = if *pooled {
                (pool(&st, &output)?, Some(output))
            } else {
                (output, None)
            };
            saved.push(Saved {
                layer: layer.clone(),
                input: a,
                pre_pool,
            });
            a = next;
        }
        let host = st.download(&a.data)?;
        let dims = a.dims;
        drop(st);
        let tape = Tape {
            gpu: self.clone(),
            layers: saved,
            last: a,
        };
        Ok((host, dims, tape))
    }
}

fn check_input(layer: &GpuLayer, a: &Buf) -> Result<(), GpuError> {
    if a.dims[3] == layer.cin {
        Ok(())
    } else {
        Err(GpuError::Cudnn {
            call: "a convolution",
            status: format!(
                "the input has {} channels, the kernel expects {}",
                a.dims[3], layer.cin
            ),
        })
    }
}

impl Tape {
    /// Kernel (`[cout, cin, 3, 3]`) and bias gradients of each layer, in order, from the
    /// gradient of the last layer's output (NHWC, host).
    pub fn backward(self, dlast: &[f32]) -> Result<Vec<LayerGradients>, GpuError> {
        let gpu = self.gpu.clone();
        let mut st = gpu.lock();
        let mut grad = st.upload(dlast)?;
        let mut out = Vec::with_capacity(self.layers.len());
        for (j, saved) in self.layers.iter().enumerate().rev() {
            let after = self
                .layers
                .get(j + 1)
                .map_or(&self.last, |next| &next.input);
            let output = match &saved.pre_pool {
                Some(o) => {
                    let mut dx = st.alloc(Buf::len(o.dims))?;
                    let s = &st.stream;
                    // SAFETY: as in `conv`; `after` is this pool's output
                    unsafe {
                        cudnn::pool_backward(
                            &st.handle,
                            &st.pool,
                            &TensorDesc::nhwc(o.dims)?,
                            addr(&o.data, s),
                            &TensorDesc::nhwc(after.dims)?,
                            addr(&after.data, s),
                            addr(&grad, s),
                            addr_mut(&mut dx, s),
                        )?;
                    }
                    grad = dx;
                    o
                }
                None => after,
            };
            let layer = &saved.layer;
            let [n, h, w, cin] = saved.input.dims;
            let shape = [n, h, w, cin, layer.cout];
            let descs = ConvShapes::new(saved.input.dims, layer.cout, st.precision)?;
            let s = st.stream.clone();
            // SAFETY: as in `conv`
            unsafe {
                cudnn::relu_backward(
                    &st.handle,
                    &descs.y,
                    &st.relu,
                    addr(&output.data, &s),
                    addr_mut(&mut grad, &s),
                )?;
            }
            let algo = st.algo(Pass::BackwardFilter, shape, &descs)?;
            let workspace = st.workspace(algo.workspace)?;
            let mut dw = st.alloc(layer.w.len())?;
            let mut db = st.alloc(layer.cout)?;
            // SAFETY: as in `conv`
            unsafe {
                cudnn::conv_backward_weights(
                    &st.handle,
                    &descs,
                    algo,
                    addr(&saved.input.data, &s),
                    addr(&grad, &s),
                    workspace,
                    addr_mut(&mut dw, &s),
                    addr_mut(&mut db, &s),
                )?;
            }
            // the first trainable layer's input gradient is not needed
            if j > 0 {
                let algo = st.algo(Pass::BackwardData, shape, &descs)?;
                let workspace = st.workspace(algo.workspace)?;
                let mut dx = st.alloc(Buf::len(saved.input.dims))?;
                // SAFETY: as in `conv`
                unsafe {
                    cudnn::conv_backward_data(
                        &st.handle,
                        &descs,
                        algo,
                        addr(&layer.w, &s),
                        addr(&grad, &s),
                        workspace,
                        addr_mut(&mut dx, &s),
                    )?;
                }
                grad = dx;
            }
            out.push((
                ohwi_to_oihw(&st.download(&dw)?, layer.cout, layer.cin),
                st.download(&db)?,
            ));
        }
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_layouts_round_trip_and_put_channels_last() {
        let (cout, cin) = (3, 5);
        let w: Vec<f32> = (0..cout * cin * 9).map(|v| v as f32).collect();
        let t = oihw_to_ohwi(&w, cout, cin);
        // [o=1][ky=2][kx=0][i=4] is w[o=1][i=4][ky=2][kx=0]
        assert_eq!(t[((9 + 6) * cin) + 4], w[(cin + 4) * 9 + 6]);
        assert_eq!(ohwi_to_oihw(&t, cout, cin), w);
    }
}
