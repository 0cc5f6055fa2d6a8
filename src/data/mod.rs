//! Data: decoding images by content and turning them into network-ready batches.

pub mod decode;
