//! Grad-CAM (Selvaraju et al. 2017) over the last convolutional layer: which regions of the
//! photo raised the predicted class's score. The activations of block5_conv3 enter the
//! autodiff graph as a leaf, the class logit is differentiated with respect to them, each
//! channel is weighted by its mean gradient, and the positive part of the weighted sum is the
//! heat map, upsampled to the photo and blended onto it.

use burn::tensor::{Device, Tensor};
use image::{Rgb, RgbImage};

use crate::model::Classifier;
use crate::model::layers::{global_average_pool, max_pool2, values};

/// Heat maps [N][h*w] (values 0..1, block5 resolution) for `class` of each image in `x`.
pub fn heatmaps(
    model: &Classifier,
    x: Tensor<4>,
    classes: &[usize],
) -> (Vec<Vec<f32>>, usize, usize) {
    let acts = model.base.forward_convs(x, 0..12);
    let last = &model.base.convs[12];
    let a = crate::model::layers::conv3x3_relu(acts, &last.weight, &last.bias)
        .autodiff()
        .require_grad();
    let logits = model.head.logits_inference(
        global_average_pool(max_pool2(a.clone())),
        model.spec.conventions,
    );
    let [n, k] = logits.dims();
    let mut mask = vec![0.0f32; n * k];
    for (i, &c) in classes.iter().enumerate() {
        mask[i * k + c] = 1.0;
    }
    let mask = crate::model::layers::tensor2(&mask, [n, k], &logits.device().inner());
    let score = (logits * mask.autodiff()).sum();
    let grads = score.backward();
    let g = a.grad(&grads).map(|t| values(&t)).unwrap_or_default();
    let [_, c, h, w] = a.dims();
    let av = values(&a.inner());
    let mut maps = Vec::with_capacity(n);
    for i in 0..n {
        let mut cam = vec![0.0f32; h * w];
        for ch in 0..c {
            let base = (i * c + ch) * h * w;
            let alpha: f32 = g
                .get(base..base + h * w)
                .map_or(0.0, |s| s.iter().sum::<f32>() / (h * w) as f32);
            for (p, v) in cam.iter_mut().enumerate() {
                *v += alpha * av[base + p];
            }
        }
        let max = cam.iter().fold(0.0f32, |m, &v| m.max(v));
        for v in cam.iter_mut() {
            *v = if max > 0.0 { v.max(0.0) / max } else { 0.0 };
        }
        maps.push(cam);
    }
    (maps, h, w)
}

fn jet(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let r = (1.5 - (4.0 * t - 3.0).abs()).clamp(0.0, 1.0);
    let g = (1.5 - (4.0 * t - 2.0).abs()).clamp(0.0, 1.0);
    let b = (1.5 - (4.0 * t - 1.0).abs()).clamp(0.0, 1.0);
    [r * 255.0, g * 255.0, b * 255.0]
}

/// The heat map (h x w) upsampled bilinearly to the photo and blended onto it (45 % heat).
pub fn overlay(photo: &RgbImage, cam: &[f32], h: usize, w: usize) -> RgbImage {
    let (pw, ph) = (photo.width(), photo.height());
    let sample = |x: u32, y: u32| -> f32 {
        let fx = ((x as f32 + 0.5) / pw as f32 * w as f32 - 0.5).clamp(0.0, (w - 1) as f32);
        let fy = ((y as f32 + 0.5) / ph as f32 * h as f32 - 0.5).clamp(0.0, (h - 1) as f32);
        let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        let at = |yy: usize, xx: usize| cam[yy * w + xx];
        (at(y0, x0) * (1.0 - tx) + at(y0, x1) * tx) * (1.0 - ty)
            + (at(y1, x0) * (1.0 - tx) + at(y1, x1) * tx) * ty
    };
    RgbImage::from_fn(pw, ph, |x, y| {
        let heat = jet(sample(x, y));
        let p = photo.get_pixel(x, y).0;
        Rgb([0, 1, 2].map(|c| {
            (0.55 * p[c] as f32 + 0.45 * heat[c])
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

/// Heat maps for images already decoded and resized to the model's input.
pub fn explain(
    model: &Classifier,
    images: &[RgbImage],
    classes: &[usize],
    device: &Device,
) -> Vec<RgbImage> {
    let spec = super::predict::input_spec(model);
    let (maps, h, w) = heatmaps(model, spec.batch(images, device), classes);
    images
        .iter()
        .zip(maps)
        .map(|(img, m)| overlay(img, &m, h, w))
        .collect()
}
