//! faceattr's CPU kernels (im2col, Winograd, their backward) against burn's own convolution
//! and autodiff on the same model: features, and every gradient of a step that trains from
//! block4 (so the backward crosses a max-pool and block boundaries), and the inference forward
//! of VGG16's real widths where F(4x4, 3x3) runs. One test in its own
//! binary, because it switches the kernels off and on for the whole process.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::{device, rel_error};
use faceattr::model::head::Head;
use faceattr::model::layers::{tensor4, values};
use faceattr::model::vgg16::Vgg16;
use faceattr::model::{Classifier, Conventions, ModelSpec, TrainableFrom};
use faceattr::preprocess::{Interpolation, Preprocessing};
use rand::{Rng, SeedableRng};

#[test]
fn host_kernels_match_burn_forward_and_gradients() {
    let dev = device();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    // 64x48: every layer but the first runs on Winograd, all tiles of the batch in each product
    let widths = [8, 8, 16, 16, 16, 16, 16, 24, 24, 24, 32, 32, 32];
    let base = Vgg16::random(&widths, &mut rng, &dev);
    let head = Head::random(32, 8, 2, &mut rng, &dev);
    let spec = ModelSpec {
        input_hw: (64, 48),
        preprocessing: Preprocessing::Caffe,
        interpolation: Interpolation::Nearest,
        conventions: Conventions::Keras,
        trainable: "block4_conv1".parse::<TrainableFrom>().expect("layer name"),
        class_names: vec!["a".into(), "b".into()],
        framing: Default::default(),
        decoding: Default::default(),
    };
    let model = Classifier { base, head, spec };
    let x: Vec<f32> = (0..4 * 3 * 64 * 48)
        .map(|_| rng.random_range(-120.0..130.0))
        .collect();
    let x = tensor4(&x, [4, 3, 64, 48], &dev);
    let y = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 0., 0., 1., 0., 1., 1., 0.], [4, 2]),
        &dev,
    );

    faceattr::kernels::set_enabled(false);
    let burn_features = values(&model.base.features(x.clone()));
    let burn_grads = faceattr::train::step::gradients(&model, x.clone(), y.clone());
    faceattr::kernels::set_enabled(true);
    let host_features = values(&model.base.features(x.clone()));
    let host_grads = faceattr::train::step::gradients(&model, x, y);

    let e = rel_error(&host_features, &burn_features);
    assert!(e < 1e-5, "features differ by {e:e}");
    assert_eq!(
        host_grads.keys().collect::<Vec<_>>(),
        burn_grads.keys().collect::<Vec<_>>()
    );
    // 3 block4 convs + 3 block5 convs (weight and bias) + 6 head tensors
    assert_eq!(host_grads.len(), 18);
    // Relative to each tensor's scale; tensors whose gradient sums to about zero over the
    // balanced batch (BN beta, the output bias: ~4e-5) are held to 1e-4 of 1e-2 instead.
    for (name, g) in &host_grads {
        let scale = common::max_or_nan(g.iter().map(|v| v.abs())).max(1e-2);
        let e = common::max_abs_diff(g, &burn_grads[name]) / scale;
        assert!(e < 1e-4, "{name}: gradients differ by {e:e} of {scale:e}");
    }

    // VGG16's real widths at 96 x 80: blocks 1 and 2 have tiles enough for the inference
    // forward's F(4x4, 3x3), whose larger transforms cost some accuracy; the features still
    // match burn's direct convolution
    let s = |h, w, cin, cout| faceattr::kernels::shape::ConvShape {
        n: 2,
        h,
        w,
        cin,
        cout,
    };
    assert!(faceattr::kernels::winograd4::suits(s(96, 80, 64, 64)));
    assert!(faceattr::kernels::winograd4::suits(s(48, 40, 128, 128)));
    let base = Vgg16::random(&faceattr::model::architecture::VGG16_WIDTHS, &mut rng, &dev);
    let v: Vec<f32> = (0..2 * 3 * 96 * 80)
        .map(|_| rng.random_range(-120.0..130.0))
        .collect();
    let x = tensor4(&v, [2, 3, 96, 80], &dev);
    faceattr::kernels::set_enabled(false);
    let burn_features = values(&base.features(x.clone()));
    faceattr::kernels::set_enabled(true);
    let host_features = values(&base.features(x));
    let e = rel_error(&host_features, &burn_features);
    assert!(e < 1e-5, "real widths: features differ by {e:e}");
    eprintln!("real widths, F(4x4) in blocks 1-2: features differ by {e:e}");
}
