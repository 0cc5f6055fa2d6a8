//! The known real weight files, one row each, next to the code that uses them (as in Keras'
//! `vgg16.py`). The checksum is what each publisher itself verifies: Keras checks an MD5,
//! torchvision the SHA-256 prefix embedded in its file name, timm's hub file is verified by
//! its full SHA-256 where recorded.

use crate::preprocess::Preprocessing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Keras,
    Torchvision,
    Timm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Sha256(String),
    /// The first hex digits of the SHA-256 (torchvision's `check_hash`).
    Sha256Prefix(String),
    Md5(String),
    /// No checksum is recorded: the download is kept and its SHA-256 printed so it can be pinned.
    Unrecorded,
}

#[derive(Debug, Clone)]
pub struct KnownWeights {
    pub model: &'static str,
    pub source: Source,
    pub file_name: String,
    pub url: String,
    pub checksum: Checksum,
    /// Size in bytes, when the publisher states it.
    pub size: Option<u64>,
    pub preprocessing: Preprocessing,
}

pub fn known() -> Vec<KnownWeights> {
    vec![
        KnownWeights {
            model: "vgg16",
            source: Source::Keras,
            file_name: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5".into(),
            url: "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5".into(),
            checksum: Checksum::Md5("6d6bbae143d832006294945121d1f1fc".into()),
            size: Some(58_889_256),
            preprocessing: Preprocessing::Caffe,
        },
        KnownWeights {
            model: "vgg16",
            source: Source::Torchvision,
            file_name: "vgg16-397923af.pth".into(),
            url: "https://download.pytorch.org/models/vgg16-397923af.pth".into(),
            checksum: Checksum::Sha256Prefix("397923af".into()),
            size: Some(553_433_881),
            preprocessing: Preprocessing::Torch,
        },
        KnownWeights {
            model: "vgg16",
            source: Source::Timm,
            file_name: "vgg16.tv_in1k.safetensors".into(),
            url: "https://huggingface.co/timm/vgg16.tv_in1k/resolve/main/model.safetensors".into(),
            // The hub serves this file through Git LFS; its SHA-256 is not recorded here yet,
            // so only the structure and shape checks on load guard it.
            checksum: Checksum::Unrecorded,
            size: None,
            preprocessing: Preprocessing::Torch,
        },
    ]
}

pub fn find(model: &str, source: Source) -> Option<KnownWeights> {
    known()
        .into_iter()
        .find(|k| k.model == model && k.source == source)
}
