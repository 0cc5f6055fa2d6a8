//! The network: VGG16's convolutional base, the reference head, and how they are trained.

pub mod architecture;
pub mod classifier;
pub mod conventions;
pub mod engine;
#[cfg(feature = "cuda")]
pub mod gpu_convs;
pub mod grads;
pub mod head;
pub mod host_convs;
pub mod layers;
pub mod prepared;
pub mod saved;
pub mod summary;
pub mod trainable;
pub mod vgg16;

pub use classifier::{Classifier, ModelSpec};
pub use conventions::Conventions;
pub use trainable::TrainableFrom;
