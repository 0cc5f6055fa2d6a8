//! Each layer's weights in the form an engine runs them, kept between forward passes: for the
//! host kernels the packed or Winograd-transformed kernel (preparing VGG16's 13 takes tens of
//! milliseconds on 2 cores), for the GPU the kernel and bias on the card. The same for every
//! batch while the weights stay the same. Whoever changes a layer's tensors calls
//! [`PreparedKernels::forget`] (the optimisation step does); a copy of the model starts with an
//! empty store, since the copy's weights may change on their own. The trainable layers' kernels
//! for the training forward are kept apart: the step that updates a layer's weights also
//! makes its next kernel in the same pass ([`PreparedKernels::keep_training`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use super::architecture::ConvLayer;
use super::layers::{values, with_values};
use crate::kernels::conv3x3::{self, ConvShape};

#[derive(Default)]
pub struct PreparedKernels {
    host: Store<LayerAt, PreparedLayer>,
    /// Trainable layers' kernels as the training forward runs them, by layer index: a step
    /// takes one out for its forward and puts the updated one back ([`Self::keep_training`]).
    training: Mutex<HashMap<usize, conv3x3::Prepared>>,
    #[cfg(feature = "cuda")]
    gpu: Store<usize, crate::gpu::GpuLayer>,
}

/// A layer index and the input height and width it was prepared for.
type LayerAt = (usize, usize, usize);

/// A prepared kernel and the layer's bias.
pub struct PreparedLayer {
    pub kernel: conv3x3::Inference,
    pub bias: Vec<f32>,
}

/// Prepared layers by key; each key's layer index comes first.
struct Store<K, V>(Mutex<HashMap<K, Arc<V>>>);

impl<K, V> Default for Store<K, V> {
    fn default() -> Self {
        Store(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq + Copy, V> Store<K, V> {
    /// The store, locked. A poisoned lock only means another thread panicked while inserting:
    /// the map still holds complete entries.
    fn map(&self) -> MutexGuard<'_, HashMap<K, Arc<V>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get_or_make<E>(&self, key: K, make: impl FnOnce() -> Result<V, E>) -> Result<Arc<V>, E> {
        if let Some(found) = self.map().get(&key).cloned() {
            return Ok(found);
        }
        let made = Arc::new(make()?);
        self.map().insert(key, made.clone());
        Ok(made)
    }

    fn retain(&self, keep: impl Fn(&K) -> bool) {
        self.map().retain(|k, _| keep(k));
    }

    fn len(&self) -> usize {
        self.map().len()
    }
}

impl PreparedKernels {
    /// Layer `index`'s kernel prepared for the host kernels at input shape `s`, from the store
    /// or made now.
    pub fn host(&self, index: usize, conv: &ConvLayer, s: ConvShape) -> Arc<PreparedLayer> {
        let Ok(layer) =
            self.host
                .get_or_make::<std::convert::Infallible>((index, s.h, s.w), || {
                    Ok(PreparedLayer {
                        kernel: with_values(&conv.weight, |w| conv3x3::Inference::new(w, s)),
                        bias: values(&conv.bias),
                    })
                });
        layer
    }

    /// Layer `index`'s kernel and bias on `gpu`, from the store or uploaded now.
    #[cfg(feature = "cuda")]
    pub fn gpu(
        &self,
        index: usize,
        conv: &ConvLayer,
        gpu: &crate::gpu::Cuda,
    ) -> Result<Arc<crate::gpu::GpuLayer>, crate::gpu::GpuError> {
        self.gpu
            .get_or_make(index, || super::gpu_convs::upload(gpu, conv))
    }

    /// Layer `index`'s kernel for the training forward at input shape `s`, taken out of the
    /// store or made now.
    pub fn take_training(&self, index: usize, conv: &ConvLayer, s: ConvShape) -> conv3x3::Prepared {
        self.training_map()
            .remove(&index)
            .unwrap_or_else(|| with_values(&conv.weight, |w| conv3x3::Prepared::new(w, s)))
    }

    /// Keeps `kernel`, prepared from layer `index`'s current weights, for the next training
    /// forward.
    pub fn keep_training(&self, index: usize, kernel: conv3x3::Prepared) {
        self.training_map().insert(index, kernel);
    }

    fn training_map(&self) -> MutexGuard<'_, HashMap<usize, conv3x3::Prepared>> {
        self.training.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops what was prepared from layer `index`'s old tensors.
    pub fn forget(&self, index: usize) {
        self.training_map().remove(&index);
        self.host.retain(|&(layer, _, _)| layer != index);
        #[cfg(feature = "cuda")]
        self.gpu.retain(|&layer| layer != index);
    }
}

impl Clone for PreparedKernels {
    fn clone(&self) -> Self {
        PreparedKernels::default()
    }
}

impl std::fmt::Debug for PreparedKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedKernels({} prepared)", self.host.len())
    }
}
