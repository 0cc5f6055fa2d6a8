//! Adam, in the two flavours faceattr reproduces. Keras applies epsilon outside the bias
//! correction (`w -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)`), PyTorch inside
//! (`w -= lr * m_hat/(sqrt(v_hat)+eps)`); burn's Adam is the latter with another epsilon, so
//! faceattr keeps its own. State is per parameter name, flattened.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

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
        let g = grad.reshape([n]);
        let (b1, b2) = (self.beta1, self.beta2);
        let t = self.step.max(1) as i32;
        let (m, v) = match self.moments.remove(name) {
            Some(mv) => mv,
            None => (g.zeros_like(), g.zeros_like()),
        };
        let m = m.mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1);
        let v = v.mul_scalar(b2) + (g.clone() * g).mul_scalar(1.0 - b2);
        let eps = self.conventions.adam_epsilon();
        let delta = match self.conventions {
            Conventions::Keras => {
                let alpha = self.lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
                (m.clone() / v.clone().sqrt().add_scalar(eps)).mul_scalar(alpha)
            }
            Conventions::Torch => {
                let m_hat = m.clone().div_scalar(1.0 - b1.powi(t));
                let v_hat = v.clone().div_scalar(1.0 - b2.powi(t));
                (m_hat / v_hat.sqrt().add_scalar(eps)).mul_scalar(self.lr)
            }
        };
        self.moments.insert(name.to_string(), (m, v));
        (param.reshape([n]) - delta).reshape(dims)
    }
}
