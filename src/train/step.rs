//! One optimisation step. The frozen prefix runs without autodiff (no graph, no backward
//! work); its output enters the autodiff graph as a constant, so gradients reach only the
//! trainable convolutions and the head.

use std::collections::BTreeMap;

use burn::tensor::Tensor;

use super::adam::Adam;
use super::loss::bce_with_logits;
use crate::model::Classifier;
use crate::model::architecture::{CONV_LAYER_NAMES, pool_after};
use crate::model::engine::Engine;
use crate::model::grads::KernelGrad;
use crate::model::head::{BatchStats, Head};
use crate::model::layers::{conv3x3_relu, global_average_pool, max_pool2, values};

#[derive(Debug, Clone)]
pub struct StepOutput {
    /// Loss of this step's forward pass, before the update (what Keras' train_on_batch returns).
    pub loss: f32,
    /// Training-mode logits of the forward pass, row-major [N, classes].
    pub logits: Vec<f32>,
}

/// Gradients of the trainable tensors, without autodiff, by tensor.
struct Gradients {
    /// (weight, bias) of each trainable convolution, from the first trainable one.
    convs: Vec<(Option<KernelGrad>, Option<Tensor<1>>)>,
    dense_w: Option<Tensor<2>>,
    dense_b: Option<Tensor<1>>,
    gamma: Option<Tensor<1>>,
    beta: Option<Tensor<1>>,
    out_w: Option<Tensor<2>>,
    out_b: Option<Tensor<1>>,
}

impl Gradients {
    /// The convolutions' gradients as given, the head's read from burn's gradients.
    fn new(
        convs: Vec<(Option<KernelGrad>, Option<Tensor<1>>)>,
        head: &Head,
        grads: &burn::tensor::Gradients,
    ) -> Self {
        Gradients {
            convs,
            dense_w: head.dense_w.grad(grads),
            dense_b: head.dense_b.grad(grads),
            gamma: head.gamma.grad(grads),
            beta: head.beta.grad(grads),
            out_w: head.out_w.grad(grads),
            out_b: head.out_b.grad(grads),
        }
    }
}

fn forward_backward(
    model: &Classifier,
    prefix: Tensor<4>,
    targets: Tensor<2>,
) -> (StepOutput, BatchStats, Gradients) {
    let engine = Engine::for_device(&prefix.device());
    if !matches!(engine, Engine::Burn) {
        return forward_backward_kernels(model, &engine, prefix, targets);
    }
    let first = model.spec.trainable.first_conv();
    let convs = model.base.trainable_copy(first..13);
    let head = model.head.trainable_copy();
    let mut h = prefix.autodiff();
    for (j, conv) in convs.iter().enumerate() {
        h = conv3x3_relu(h, &conv.weight, &conv.bias);
        if pool_after(first + j) {
            h = max_pool2(h);
        }
    }
    let (logits, stats) = head.logits_train(global_average_pool(h), model.spec.conventions);
    let loss = bce_with_logits(logits.clone(), targets.autodiff());
    let out = StepOutput {
        loss: values(&loss)[0],
        logits: values(&logits),
    };
    let grads = loss.backward();
    let convs = convs
        .iter()
        .map(|c| {
            (
                c.weight.grad(&grads).map(KernelGrad::Tensor),
                c.bias.grad(&grads),
            )
        })
        .collect();
    (out, stats, Gradients::new(convs, &head, &grads))
}

/// The same step with the trainable convolutions on faceattr's CPU kernels or cuDNN: only the
/// head goes through burn's autodiff, and the gradient of its input features is carried back
/// through the convolutions by the engine's [`crate::model::engine::Tape`].
fn forward_backward_kernels(
    model: &Classifier,
    engine: &Engine,
    prefix: Tensor<4>,
    targets: Tensor<2>,
) -> (StepOutput, BatchStats, Gradients) {
    let first = model.spec.trainable.first_conv();
    let device = prefix.device();
    let convs = &model.base.convs[first..];
    let Some((features, tape)) =
        engine.forward_train(convs, first, prefix.clone(), &model.base.prepared)
    else {
        return forward_backward(model, prefix, targets);
    };
    let features = features.autodiff().require_grad();
    let head = model.head.trainable_copy();
    let (logits, stats) = head.logits_train(features.clone(), model.spec.conventions);
    let loss = bce_with_logits(logits.clone(), targets.autodiff());
    let out = StepOutput {
        loss: values(&loss)[0],
        logits: values(&logits),
    };
    let grads = loss.backward();
    let conv_grads = match features.grad(&grads) {
        Some(df) if !convs.is_empty() => tape.backward(&values(&df), &device),
        _ => Vec::new(),
    };
    let convs = conv_grads
        .into_iter()
        .map(|g| (Some(g.kernel), Some(g.bias)))
        .collect();
    (out, stats, Gradients::new(convs, &head, &grads))
}

/// A full step from a preprocessed NCHW batch and one-hot targets [N, classes].
pub fn train_step(
    model: &mut Classifier,
    opt: &mut Adam,
    x: Tensor<4>,
    targets: Tensor<2>,
) -> StepOutput {
    let prefix = model.frozen_prefix(x);
    train_step_from_prefix(model, opt, prefix, targets)
}

/// A step from the frozen prefix's output (computed now or read from the feature cache).
pub fn train_step_from_prefix(
    model: &mut Classifier,
    opt: &mut Adam,
    prefix: Tensor<4>,
    targets: Tensor<2>,
) -> StepOutput {
    let (out, stats, g) = forward_backward(model, prefix, targets);
    let first = model.spec.trainable.first_conv();
    opt.begin_step();
    // a parameter is taken out rather than cloned: one nothing else holds is updated in its
    // own buffer, without a copy
    fn take<const D: usize>(p: &mut Tensor<D>) -> Tensor<D> {
        let device = p.device();
        std::mem::replace(p, Tensor::empty([0; D], &device))
    }
    fn apply<const D: usize>(opt: &mut Adam, name: &str, p: &mut Tensor<D>, g: Option<Tensor<D>>) {
        if let Some(g) = g {
            *p = opt.update(name, take(p), g);
        }
    }
    for (j, (gw, gb)) in g.convs.into_iter().enumerate() {
        let i = first + j;
        let conv = &mut model.base.convs[i];
        let device = conv.weight.device();
        let name = format!("{}.weight", CONV_LAYER_NAMES[i]);
        // the host's Winograd gradient updates the kernel a block at a time and leaves the
        // next forward's kernel made; any other is a tensor for the plain update
        let next_kernel = match gw {
            Some(KernelGrad::Transformed(grad)) => {
                let mut update = opt.host_update(&name, take(&mut conv.weight));
                let rule = update.rule;
                let kernel = grad.update(update.arrays(), |g, [p, m, v]| rule.apply(p, g, m, v));
                conv.weight = update.finish(opt);
                Some(kernel)
            }
            other => {
                let grad = other.map(|g| g.into_tensor(&device));
                apply(opt, &name, &mut conv.weight, grad);
                None
            }
        };
        apply(
            opt,
            &format!("{}.bias", CONV_LAYER_NAMES[i]),
            &mut conv.bias,
            gb,
        );
        model.base.prepared.forget(i);
        if let Some(kernel) = next_kernel {
            model.base.prepared.keep_training(i, kernel);
        }
    }
    let h = &mut model.head;
    apply(opt, "dense.weight", &mut h.dense_w, g.dense_w);
    apply(opt, "dense.bias", &mut h.dense_b, g.dense_b);
    apply(opt, "batch_normalization.gamma", &mut h.gamma, g.gamma);
    apply(opt, "batch_normalization.beta", &mut h.beta, g.beta);
    apply(opt, "dense_1.weight", &mut h.out_w, g.out_w);
    apply(opt, "dense_1.bias", &mut h.out_b, g.out_b);
    h.update_moving_stats(&stats, model.spec.conventions);
    out
}

/// The gradients one step would apply, by canonical tensor name (for inspection and tests).
/// The model is not changed.
pub fn gradients(
    model: &Classifier,
    x: Tensor<4>,
    targets: Tensor<2>,
) -> BTreeMap<String, Vec<f32>> {
    let first = model.spec.trainable.first_conv();
    let (_, _, g) = forward_backward(model, model.frozen_prefix(x), targets);
    let mut out = BTreeMap::new();
    for (j, (gw, gb)) in g.convs.into_iter().enumerate() {
        let name = CONV_LAYER_NAMES[first + j];
        if let Some(k) = gw {
            let device = model.base.convs[first + j].weight.device();
            out.insert(format!("{name}.weight"), values(&k.into_tensor(&device)));
        }
        if let Some(t) = gb {
            out.insert(format!("{name}.bias"), values(&t));
        }
    }
    let head: [(&str, Option<Vec<f32>>); 6] = [
        ("dense.weight", g.dense_w.as_ref().map(values)),
        ("dense.bias", g.dense_b.as_ref().map(values)),
        ("batch_normalization.gamma", g.gamma.as_ref().map(values)),
        ("batch_normalization.beta", g.beta.as_ref().map(values)),
        ("dense_1.weight", g.out_w.as_ref().map(values)),
        ("dense_1.bias", g.out_b.as_ref().map(values)),
    ];
    for (name, v) in head {
        if let Some(v) = v {
            out.insert(name.to_string(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::model::head::Head;
    use crate::model::layers::{tensor_from_vec, tensor4};
    use crate::model::vgg16::Vgg16;
    use crate::model::{Conventions, ModelSpec};
    use crate::preprocess::{Interpolation, Preprocessing};

    fn small_model(rng: &mut rand_chacha::ChaCha8Rng, dev: &Device) -> Classifier {
        let widths = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8];
        let spec = ModelSpec {
            input_hw: (32, 32),
            preprocessing: Preprocessing::Caffe,
            interpolation: Interpolation::Nearest,
            conventions: Conventions::Keras,
            trainable: Default::default(),
            class_names: vec!["a".into(), "b".into()],
            framing: Default::default(),
            decoding: Default::default(),
        };
        Classifier {
            base: Vgg16::random(&widths, rng, dev),
            head: Head::random(8, 4, 2, rng, dev),
            spec,
        }
    }

    /// The one-pass update from the Winograd gradient (gradient, Adam and the next transform
    /// together) gives, to the bit, what the plain update from the OIHW gradient gives, and
    /// the kernel it leaves is the one the new weights make. Sizes that are not multiples of
    /// the sixteen kernels the passes take at a time.
    #[test]
    fn the_one_pass_update_is_the_plain_update() {
        use crate::kernels::{conv3x3, winograd};
        use crate::model::grads::TransformedGrad;
        let dev = Device::flex();
        let (cout, cin) = (20, 37);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let w: Vec<f32> = (0..cout * cin * 9)
            .map(|_| rng.random_range(-0.5..0.5))
            .collect();
        let (mut fused, mut plain) = (
            Adam::new(0.01, Conventions::Keras),
            Adam::new(0.01, Conventions::Keras),
        );
        let (mut fused_w, mut plain_w) = (w.clone(), w);
        for _ in 0..3 {
            let du: Vec<f32> = (0..16 * cout * cin)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let tensor = |v: &[f32]| tensor_from_vec(v.to_vec(), [cout, cin, 3, 3], &dev);
            fused.begin_step();
            let mut update = fused.host_update("w", tensor(&fused_w));
            let rule = update.rule;
            let grad = TransformedGrad::new(
                du.clone(),
                winograd::transform_kernel(&fused_w, cout, cin),
                cout,
                cin,
            );
            let kernel = grad.update(update.arrays(), |g, [p, m, v]| rule.apply(p, g, m, v));
            fused_w = values(&update.finish(&mut fused));
            plain.begin_step();
            let g = KernelGrad::Transformed(TransformedGrad::new(du, Vec::new(), cout, cin));
            plain_w = values(&plain.update("w", tensor(&plain_w), g.into_tensor(&dev)));
            assert_eq!(fused_w, plain_w);
            let (fm, fv) = &fused.moments["w"];
            let (pm, pv) = &plain.moments["w"];
            assert_eq!((values(fm), values(fv)), (values(pm), values(pv)));
            match kernel {
                conv3x3::Prepared::Winograd(u) => {
                    assert_eq!(u, winograd::transform_kernel(&plain_w, cout, cin))
                }
                conv3x3::Prepared::Im2col(_) => panic!("a Winograd kernel was expected"),
            }
        }
    }

    /// A step keeps block5's transformed kernels, updated in the same pass as the weights, for
    /// the next step; a copy of the model (as a resumed run has) makes them from its weights.
    /// Both must give the same next step to the bit.
    #[test]
    fn the_kept_kernels_give_the_step_a_fresh_model_gives() {
        let dev = Device::flex();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut model = small_model(&mut rng, &dev);
        let x: Vec<f32> = (0..3 * 3 * 32 * 32)
            .map(|_| rng.random_range(-100.0..100.0))
            .collect();
        let x = tensor4(&x, [3, 3, 32, 32], &dev);
        let y = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0., 0., 1., 1., 0.], [3, 2]),
            &dev,
        );
        let mut adam = Adam::new(0.01, Conventions::Keras);
        train_step(&mut model, &mut adam, x.clone(), y.clone());
        let (mut copy, mut copy_adam) = (model.clone(), adam.clone());
        let kept = train_step(&mut model, &mut adam, x.clone(), y.clone());
        let fresh = train_step(&mut copy, &mut copy_adam, x, y);
        assert_eq!(kept.logits, fresh.logits);
        for (a, b) in model.base.convs.iter().zip(&copy.base.convs) {
            assert_eq!(values(&a.weight), values(&b.weight));
        }
        for (name, (m, v)) in &adam.moments {
            let (cm, cv) = &copy_adam.moments[name];
            assert_eq!((values(m), values(v)), (values(cm), values(cv)), "{name}");
        }
    }

    /// The forward pass keeps prepared kernels between calls; a step that changes block5 must
    /// not leave the old ones behind.
    #[test]
    fn a_step_refreshes_the_prepared_kernels_it_changes() {
        let dev = Device::flex();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut model = small_model(&mut rng, &dev);
        let x: Vec<f32> = (0..2 * 3 * 32 * 32)
            .map(|_| rng.random_range(-100.0..100.0))
            .collect();
        let x = tensor4(&x, [2, 3, 32, 32], &dev);
        let y = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0., 0., 1.], [2, 2]), &dev);
        let before = values(&model.base.features(x.clone()));
        let mut adam = Adam::new(0.05, Conventions::Keras);
        train_step(&mut model, &mut adam, x.clone(), y);
        let after = values(&model.base.features(x.clone()));
        // a copy starts without prepared kernels, so it prepares them from the new weights
        let fresh = values(&model.clone().base.features(x));
        assert_eq!(after, fresh);
        assert_ne!(after, before);
    }
}
