//! Three Adam steps on the tiny full model, against Keras (`keras` conventions) and PyTorch
//! (`torch` conventions): losses, inference predictions before and after, BatchNorm moving
//! statistics, the trained weights, and frozen weights left bit-identical.

mod common;

use burn::tensor::{Tensor, TensorData};
use common::*;
use faceattr::model::layers::values;
use faceattr::model::{Classifier, Conventions, ModelSpec, TrainableFrom};
use faceattr::preprocess::InputSpec;
use faceattr::preprocess::{Interpolation, Preprocessing};
use faceattr::train::{Adam, train_step};

fn classifier(file: &str, prep: Preprocessing, conventions: Conventions) -> Classifier {
    let ws = faceattr::weights::load(&fixtures().join(file)).expect("weights load");
    let spec = ModelSpec {
        input_hw: (218, 178),
        preprocessing: prep,
        interpolation: Interpolation::Nearest,
        conventions,
        trainable: TrainableFrom::REFERENCE,
        class_names: vec!["a".into(), "b".into()],
        framing: Default::default(),
        decoding: Default::default(),
    };
    Classifier::from_weights(&ws, 8, spec, 0, &device()).expect("classifier builds")
}

fn batch(framework: &str, spec: &InputSpec) -> Tensor<4> {
    let imgs: Vec<_> = inputs(framework)
        .iter()
        .map(|p| spec.load(p).expect("decodes"))
        .collect();
    spec.batch(&imgs, &device())
}

fn labels(v: &serde_json::Value) -> Tensor<2> {
    Tensor::from_data(TensorData::new(matrix(v), [4, 2]), &device())
}

fn probs(model: &Classifier, x: &Tensor<4>) -> Vec<f32> {
    values(&model.probabilities(x.clone()))
}

fn frozen_values(model: &Classifier) -> Vec<Vec<f32>> {
    model.base.convs[..10]
        .iter()
        .flat_map(|c| [values(&c.weight), values(&c.bias)])
        .collect()
}

#[test]
fn three_keras_adam_steps_match_keras() {
    let r = reference("keras");
    let fm = &r["full_model"];
    let mut model = classifier(
        "keras/tiny_model_full.h5",
        Preprocessing::Caffe,
        Conventions::Keras,
    );
    let x = batch("keras", &spec(Preprocessing::Caffe));
    let y = labels(&fm["labels"]);

    let before = probs(&model, &x);
    let want = matrix(&fm["predictions_before_training_inference_mode"]);
    assert!(
        max_abs_diff(&before, &want) < 1e-4,
        "before: {before:?} vs {want:?}"
    );

    let frozen = frozen_values(&model);
    let mut adam = Adam::new(1e-3, Conventions::Keras);
    for (i, step) in fm["train_on_batch_steps"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let out = train_step(&mut model, &mut adam, x.clone(), y.clone());
        let want = step["loss"].as_f64().unwrap() as f32;
        assert!(
            (out.loss - want).abs() < 1e-4,
            "step {i}: loss {} vs keras {want}",
            out.loss
        );
    }
    assert_eq!(
        frozen_values(&model),
        frozen,
        "blocks 1-4 must stay bit-identical"
    );

    let after = probs(&model, &x);
    let want = matrix(&fm["predictions_after_3_steps_inference_mode"]);
    assert!(
        max_abs_diff(&after, &want) < 1e-4,
        "after: {after:?} vs {want:?}"
    );
    let mm = values(&model.head.moving_mean);
    let mv = values(&model.head.moving_var);
    assert!(max_abs_diff(&mm, &floats(&fm["bn_moving_mean_after_3_steps"])) < 1e-5);
    assert!(max_abs_diff(&mv, &floats(&fm["bn_moving_variance_after_3_steps"])) < 1e-5);

    // Every tensor against the weights Keras saved after its three steps.
    let trained =
        faceattr::weights::load(&fixtures().join("keras/tiny_model_full_trained.h5")).unwrap();
    let ours: std::collections::BTreeMap<_, _> = model
        .base
        .named_tensors()
        .into_iter()
        .chain(model.head.named_tensors())
        .collect();
    assert_eq!(ours.len(), trained.tensors.len());
    for (name, t) in &trained.tensors {
        let err = max_abs_diff(&ours[name].data, &t.data);
        assert!(
            err < 2e-5,
            "{name}: max abs diff {err:e} from Keras' trained weights"
        );
    }
}

/// Under PyTorch's conventions the first step is compared element by element. Later steps
/// cannot match to 1e-4, and the reason is in the fixture itself: dense's bias feeds a ReLU
/// and then BatchNorm, so for every unit active on all four images its true gradient is exactly
/// zero (BatchNorm removes any constant shift). PyTorch's float32 gives 1.04e-6 of rounding
/// noise there (reference `grad_norms`), ours ~2.5e-7, and Adam with epsilon 1e-8 divides
/// noise by its own size: each noisy element moves by a full learning rate (1e-3) in the
/// noise's direction. Keras' epsilon (1e-7 outside the bias correction, 3.2e-6 inside at t=1)
/// damps the same noise, which is why the Keras run above matches to 1e-4 through three
/// steps. So from step 2 on the comparison is at the level that noise allows.
#[test]
fn torch_adam_first_step_matches_pytorch_exactly_and_later_steps_within_noise() {
    let r = reference("torch");
    let tm = &r["tiny_model"];
    let mut model = classifier(
        "torch/tiny_model_full.safetensors",
        Preprocessing::Torch,
        Conventions::Torch,
    );
    let x = batch("torch", &spec(Preprocessing::Torch));
    let y = labels(&tm["labels"]);

    let before = probs(&model, &x);
    let want = matrix(&tm["eval_predictions_initial"]);
    assert!(
        max_abs_diff(&before, &want) < 1e-4,
        "before: {before:?} vs {want:?}"
    );

    let frozen = frozen_values(&model);
    let mut adam = Adam::new(1e-3, Conventions::Torch);
    let mut losses = Vec::new();
    for (i, step) in tm["train_steps"].as_array().unwrap().iter().enumerate() {
        let out = train_step(&mut model, &mut adam, x.clone(), y.clone());
        let want = step["loss_before_update"].as_f64().unwrap() as f32;
        losses.push((out.loss, want));
        if i == 0 {
            assert!(
                (out.loss - want).abs() < 1e-5,
                "step 0: loss {} vs torch {want}",
                out.loss
            );
            let train_probs: Vec<f32> = out
                .logits
                .iter()
                .map(|z| 1.0 / (1.0 + (-z).exp()))
                .collect();
            assert!(max_abs_diff(&train_probs, &matrix(&step["train_mode_predictions"])) < 1e-5);
            let rm = values(&model.head.moving_mean);
            let rv = values(&model.head.moving_var);
            assert!(
                max_abs_diff(&rm, &floats(&step["bn_running_mean_after"])) < 1e-6,
                "running mean"
            );
            assert!(
                max_abs_diff(&rv, &floats(&step["bn_running_var_after"])) < 1e-6,
                "running var (unbiased)"
            );
            // dense_1's bias after one update is downstream of nothing noisy.
            let b = values(&model.head.out_b);
            assert!(
                max_abs_diff(&b, &floats(&step["head_fc2_bias_after"])) < 1e-6,
                "fc2 bias after step 0"
            );
        }
    }
    assert_eq!(
        frozen_values(&model),
        frozen,
        "blocks 1-4 must stay bit-identical"
    );
    for (i, (ours, theirs)) in losses.iter().enumerate() {
        assert!(
            (ours - theirs).abs() < 2e-3,
            "step {i}: loss {ours} vs torch {theirs} (noise bound)"
        );
    }
    let after = probs(&model, &x);
    let want = matrix(&tm["eval_predictions_after_3_steps"]);
    let err = max_abs_diff(&after, &want);
    assert!(
        err < 5e-3,
        "after: max diff {err} (noise bound): {after:?} vs {want:?}"
    );
}

/// The gradients of the first step, element by element where the reference lists them and
/// by norm for every trainable tensor; dense's bias gradient is zero up to rounding in both.
#[test]
fn torch_first_step_gradients_match_pytorch() {
    let r = reference("torch");
    let step = &r["tiny_model"]["train_steps"][0];
    let model = classifier(
        "torch/tiny_model_full.safetensors",
        Preprocessing::Torch,
        Conventions::Torch,
    );
    let x = batch("torch", &spec(Preprocessing::Torch));
    let y = labels(&r["tiny_model"]["labels"]);
    let grads = faceattr::train::step::gradients(&model, x, y);
    let torch_names = [
        ("block5_conv1.weight", "features.24.weight"),
        ("block5_conv1.bias", "features.24.bias"),
        ("block5_conv2.weight", "features.26.weight"),
        ("block5_conv2.bias", "features.26.bias"),
        ("block5_conv3.weight", "features.28.weight"),
        ("block5_conv3.bias", "features.28.bias"),
        ("dense.weight", "head.fc1.weight"),
        ("batch_normalization.gamma", "head.bn.weight"),
        ("batch_normalization.beta", "head.bn.bias"),
        ("dense_1.weight", "head.fc2.weight"),
        ("dense_1.bias", "head.fc2.bias"),
    ];
    for (ours, theirs) in torch_names {
        let g = &grads[ours];
        let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt();
        let want = step["grad_norms"][theirs].as_f64().unwrap() as f32;
        assert!(
            (norm - want).abs() / want < 1e-4,
            "{ours}: grad norm {norm} vs torch {want}"
        );
    }
    let dense_bias_norm = grads["dense.bias"]
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt();
    assert!(
        dense_bias_norm < 1e-5,
        "dense.bias gradient is zero up to rounding, got {dense_bias_norm}"
    );
    assert!(
        max_abs_diff(
            &grads["block5_conv3.bias"],
            &floats(&step["grad_features_28_bias"])
        ) < 1e-5
    );
    assert!(max_abs_diff(&grads["dense_1.bias"], &floats(&step["grad_head_fc2_bias"])) < 1e-6);
    // torch's Linear weight is [out, in]; ours [in, out].
    let fc2: Vec<f32> = matrix(&step["grad_head_fc2_weight"]);
    let ours = &grads["dense_1.weight"];
    for o in 0..2 {
        for i in 0..8 {
            assert!(
                (ours[i * 2 + o] - fc2[o * 8 + i]).abs() < 1e-5,
                "fc2 grad [{o},{i}]"
            );
        }
    }
}
