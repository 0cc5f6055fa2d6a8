//! Adam, in the two flavours faceattr reproduces. Keras applies epsilon outside the bias
//! correction (`w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)`), PyTorch inside
//! (`w -= lr * m_hat/(sqrt(v_hat)+eps)`); burn's Adam is the latter with another epsilon, so
//! faceattr keeps its own. State is per parameter name, flattened.
//!
//! On the CPU the update is one fused pass over parameter, gradient and moments
//! ([`fused_update`]); on other devices it is a few tensor operations. Both compute each
//! element with the same f32 operations in the same order.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::model::Conventions;

#[derive(Debug, Clone)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub conventions: Conventions,
    /// Steps taken so far (t of the next update is `step + 1`).
    pub step: u64,
    pub moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
}

impl Adam {
    pub fn new(lr: f64, conventions: Conventions) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            conventions,
            step: 0,
            moments: BTreeMap::new(),
        }
    }

    /// Call once per optimisation step, before the parameter updates of that step.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// Returns the updated parameter for gradient `grad` (both without autodiff).
    pub fn update<const D: usize>(
        &mut self,
        name: &str,
        param: Tensor<D>,
        grad: Tensor<D>,
    ) -> Tensor<D> {
        let dims = param.dims();
        let n: usize = dims.iter().product();
        let (param, grad) = (param.reshape([n]), grad.reshape([n]));
        let t = self.step.max(1) as i32;
        let updated = if param.device() == Device::flex() {
            self.update_host(name, param, grad, t)
        } else {
            self.update_tensors(name, param, grad, t)
        };
        updated.reshape(dims)
    }

    /// The update as one fused pass over host memory.
    fn update_host(&mut self, name: &str, param: Tensor<1>, grad: Tensor<1>, t: i32) -> Tensor<1> {
        let g = host_vec(grad);
        let mut update = self.host_update_at(name, param, t);
        let rule = update.rule;
        let [p, m, v] = update.arrays();
        fused_update(&rule, p, &g, m, v);
        update.finish(self)
    }

    /// The update of `param` taken apart for a gradient that comes a block at a time: the
    /// parameter and its moments as host arrays ([`HostUpdate::arrays`]), to which the
    /// caller applies [`HostUpdate::rule`] block by block before [`HostUpdate::finish`]. Call
    /// [`Adam::begin_step`] first, as for [`Adam::update`].
    pub fn host_update<const D: usize>(&mut self, name: &str, param: Tensor<D>) -> HostUpdate<D> {
        let t = self.step.max(1) as i32;
        self.host_update_at(name, param, t)
    }

    fn host_update_at<const D: usize>(
        &mut self,
        name: &str,
        param: Tensor<D>,
        t: i32,
    ) -> HostUpdate<D> {
        let (dims, device) = (param.dims(), param.device());
        let n = dims.iter().product();
        let p = host_vec(param.reshape([n]));
        let (m, v) = match self.moments.remove(name) {
            Some((m, v)) => (host_vec(m), host_vec(v)),
            None => (vec![0.0; n], vec![0.0; n]),
        };
        HostUpdate {
            name: name.to_string(),
            dims,
            device,
            rule: StepScalars::new(self, t),
            p,
            m,
            v,
        }
    }

    /// The update as tensor operations on the parameter's device.
    fn update_tensors(&mut self, name: &str, param: Tensor<1>, g: Tensor<1>, t: i32) -> Tensor<1> {
        let s = StepScalars::new(self, t);
        let (m, v) = match self.moments.remove(name) {
            Some(mv) => mv,
            None => (g.zeros_like(), g.zeros_like()),
        };
        let m = m.mul_scalar(s.b1) + g.clone().mul_scalar(s.one_minus_b1);
        let v = v.mul_scalar(s.b2) + (g.clone() * g).mul_scalar(s.one_minus_b2);
        let delta = match s.conventions {
            Conventions::Keras => {
                (m.clone() / v.clone().sqrt().add_scalar(s.eps)).mul_scalar(s.rate)
            }
            Conventions::Torch => {
                let m_hat = m.clone().div_scalar(s.c1);
                let v_hat = v.clone().div_scalar(s.c2);
                (m_hat / v_hat.sqrt().add_scalar(s.eps)).mul_scalar(s.rate)
            }
        };
        self.moments.insert(name.to_string(), (m, v));
        param - delta
    }
}

/// A parameter's Adam update on the host, taken apart (see [`Adam::host_update`]).
pub struct HostUpdate<const D: usize> {
    name: String,
    dims: [usize; D],
    device: Device,
    /// The step's arithmetic, to apply to each element.
    pub rule: StepScalars,
    p: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl<const D: usize> HostUpdate<D> {
    /// The parameter and its first and second moments, flattened in the parameter's order.
    pub fn arrays(&mut self) -> [&mut [f32]; 3] {
        [&mut self.p, &mut self.m, &mut self.v]
    }

    /// Keeps the moments in `adam` and returns the parameter as a tensor again.
    pub fn finish(self, adam: &mut Adam) -> Tensor<D> {
        let n = self.p.len();
        let tensor = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &self.device);
        adam.moments
            .insert(self.name.clone(), (tensor(self.m), tensor(self.v)));
        tensor(self.p).reshape(self.dims)
    }
}

/// A tensor's values, moved out without a copy where its buffer is not shared.
fn host_vec(t: Tensor<1>) -> Vec<f32> {
    let data = t.into_data().convert::<f32>();
    // `convert` made the values f32, so this cannot fail; an empty result would fail the
    // length check of `fused_update` rather than go unnoticed
    data.try_into_vec::<f32>().unwrap_or_default()
}

/// The scalars of one step, as f32 (what a tensor's scalar operations would make of them),
/// for both the fused pass and the tensor path.
#[derive(Debug, Clone, Copy)]
pub struct StepScalars {
    conventions: Conventions,
    b1: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    eps: f32,
    /// Keras: `lr * sqrt(1 - b2^t) / (1 - b1^t)`; PyTorch: `lr`.
    rate: f32,
    /// PyTorch's bias corrections `1 - b1^t` and `1 - b2^t`.
    c1: f32,
    c2: f32,
}

impl StepScalars {
    fn new(adam: &Adam, t: i32) -> Self {
        let (b1, b2) = (adam.beta1, adam.beta2);
        let rate = match adam.conventions {
            Conventions::Keras => adam.lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t)),
            Conventions::Torch => adam.lr,
        };
        StepScalars {
            conventions: adam.conventions,
            b1: b1 as f32,
            one_minus_b1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            eps: adam.conventions.adam_epsilon() as f32,
            rate: rate as f32,
            c1: (1.0 - b1.powi(t)) as f32,
            c2: (1.0 - b2.powi(t)) as f32,
        }
    }
}

/// One Adam step over host slices in a single pass, in parallel chunks (each element is
/// independent, so the result does not depend on the threads).
fn fused_update(s: &StepScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    const CHUNK: usize = 1 << 14;
    s.check(p, g, m, v);
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| s.apply(p, g, m, v));
}

impl StepScalars {
    /// The step on parameter values `p` with gradient `g` and moments `m` and `v`, element by
    /// element, on this thread.
    pub fn apply(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let s = self;
        s.check(p, g, m, v);
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = *m * s.b1 + g * s.one_minus_b1;
            *v = *v * s.b2 + (g * g) * s.one_minus_b2;
            let delta = match s.conventions {
                Conventions::Keras => (*m / (v.sqrt() + s.eps)) * s.rate,
                Conventions::Torch => ((*m / s.c1) / ((*v / s.c2).sqrt() + s.eps)) * s.rate,
            };
            *p -= delta;
        }
    }

    fn check(&self, p: &[f32], g: &[f32], m: &[f32], v: &[f32]) {
        assert!(
            g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
            "Adam: parameter, gradient and moments differ in length"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused CPU pass and the tensor operations give the same parameters and moments.
    #[test]
    fn fused_pass_matches_tensor_operations() {
        for conventions in [Conventions::Keras, Conventions::Torch] {
            let n = 40_000;
            let start: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut adam = Adam::new(1e-3, conventions);
            let (mut fused_p, mut m, mut v) = (start.clone(), vec![0.0; n], vec![0.0; n]);
            let device = Device::flex();
            let mut tensor_p = Tensor::<1>::from_data(TensorData::new(start.clone(), [n]), &device);
            for step in 1..=3 {
                let g: Vec<f32> = (0..n)
                    .map(|i| (i as f32 * 0.11 + step as f32).cos() * 1e-2)
                    .collect();
                adam.step = step;
                fused_update(
                    &StepScalars::new(&adam, step as i32),
                    &mut fused_p,
                    &g,
                    &mut m,
                    &mut v,
                );
                let grad = Tensor::<1>::from_data(TensorData::new(g, [n]), &device);
                tensor_p = adam.update_tensors("w", tensor_p, grad, step as i32);
            }
            let want = crate::model::layers::values(&tensor_p);
            let (tm, tv) = &adam.moments["w"];
            let (want_m, want_v) = (
                crate::model::layers::values(tm),
                crate::model::layers::values(tv),
            );
            let close = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-6 * (1.0 + y.abs()))
            };
            assert!(close(&fused_p, &want), "{conventions:?}: parameters differ");
            assert!(
                close(&m, &want_m) && close(&v, &want_v),
                "{conventions:?}: moments differ"
            );
            assert!(
                fused_p.iter().zip(&start).any(|(a, b)| a != b),
                "nothing moved"
            );
        }
    }
}
