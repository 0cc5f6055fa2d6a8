//! Evaluation pictures: confusion matrix, ROC curve, reliability diagram, the grid of the most
//! confident mistakes, and the subgroup accuracy gaps.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::eval::report::{EvalReport, Mistake, Subgroup};

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

pub fn confusion_matrix(path: &Path, r: &EvalReport) -> Result<(), String> {
    super::font::ensure()?;
    let k = r.classes.len();
    super::png::AtomicPng::new(path, (560, 520)).draw(|root| {
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("confusion matrix (accuracy {:.2} %)", 100.0 * r.accuracy),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())
            .map_err(err)?;
        // row 0 of the matrix is drawn at the top
        let name = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) => {
                let i = if flip { k.checked_sub(i + 1) } else { Some(*i) };
                i.and_then(|i| r.classes.get(i).cloned())
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .x_labels(k)
            .y_labels(k)
            .x_label_formatter(&|v| name(v, false))
            .y_label_formatter(&|v| name(v, true))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        let max = r
            .confusion
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        for (t, row) in r.confusion.iter().enumerate() {
            for (p, &n) in row.iter().enumerate() {
                let y = k - 1 - t;
                let shade = 1.0 - 0.75 * n as f64 / max;
                let color = RGBColor((255.0 * shade) as u8, (255.0 * shade) as u8, 255);
                let cell = [
                    (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                ];
                chart
                    .draw_series(std::iter::once(Rectangle::new(cell, color.filled())))
                    .map_err(err)?;
                let style = TextStyle::from(("sans-serif", 22)).color(&BLACK);
                let (cx, cy) =
                    chart.backend_coord(&(SegmentValue::Exact(p), SegmentValue::Exact(y + 1)));
                let (dx, dy) =
                    chart.backend_coord(&(SegmentValue::Exact(p + 1), SegmentValue::Exact(y)));
                root.draw(&Text::new(
                    n.to_string(),
                    ((cx + dx) / 2 - 12, (cy + dy) / 2 - 10),
                    style,
                ))
                .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// A 0..1 x 0..1 chart with its diagonal drawn, on a 520 x 520 picture.
fn unit_square<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    title: String,
    x_desc: &str,
    y_desc: &str,
) -> Result<ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>, String>
{
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
        .map_err(err)?;
    Ok(chart)
}

pub fn roc(path: &Path, r: &EvalReport) -> Result<(), String> {
    super::font::ensure()?;
    super::png::AtomicPng::new(path, (520, 520)).draw(|root| {
        let title = r
            .roc_auc
            .map_or_else(|| "ROC".to_string(), |a| format!("ROC, AUC {a:.4}"));
        let mut chart = unit_square(&root, title, "false positive rate", "true positive rate")?;
        chart
            .draw_series(LineSeries::new(r.roc.clone(), BLUE.stroke_width(2)))
            .map_err(err)?;
        Ok(())
    })
}

pub fn reliability(path: &Path, r: &EvalReport) -> Result<(), String> {
    super::font::ensure()?;
    super::png::AtomicPng::new(path, (520, 520)).draw(|root| {
        let mut chart = unit_square(
            &root,
            format!("reliability (ECE {:.4})", r.ece),
            "confidence",
            "accuracy",
        )?;
        let n = r.reliability.len().max(1) as f64;
        chart
            .draw_series(
                r.reliability
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.count > 0)
                    .map(|(i, b)| {
                        Rectangle::new(
                            [
                                (i as f64 / n + 0.005, 0.0),
                                ((i + 1) as f64 / n - 0.005, b.accuracy),
                            ],
                            BLUE.mix(0.6).filled(),
                        )
                    }),
            )
            .map_err(err)?;
        Ok(())
    })
}

/// A grid of the worst mistakes with true / predicted label and probability under each.
pub fn errors(path: &Path, worst: &[Mistake]) -> Result<(), String> {
    super::font::ensure()?;
    let (tw, th, label_h, cols) = (128u32, 156u32, 40u32, 4u32);
    let rows = (worst.len() as u32).div_ceil(cols).max(1);
    let (w, h) = (cols * tw, rows * (th + label_h));
    let mut canvas = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (i, m) in worst.iter().enumerate() {
        let (x, y) = ((i as u32 % cols) * tw, (i as u32 / cols) * (th + label_h));
        if let Ok(img) =
            crate::data::decode::decode_rgb(&m.path, crate::data::decode::DEFAULT_PIXEL_LIMIT)
        {
            let thumb = image::imageops::resize(
                &img,
                tw - 8,
                th - 8,
                image::imageops::FilterType::Triangle,
            );
            image::imageops::overlay(&mut canvas, &thumb, (x + 4) as i64, (y + 4) as i64);
        }
    }
    super::png::AtomicPng::from_rgb(path, canvas).draw(|root| {
        for (i, m) in worst.iter().enumerate() {
            let (x, y) = (
                (i as u32 % cols) * tw,
                (i as u32 / cols) * (th + label_h) + th,
            );
            let style = TextStyle::from(("sans-serif", 13)).color(&BLACK);
            root.draw(&Text::new(
                format!("true {}", m.truth),
                (x as i32 + 4, y as i32 + 2),
                style.clone(),
            ))
            .map_err(err)?;
            let red = TextStyle::from(("sans-serif", 13)).color(&RED);
            root.draw(&Text::new(
                format!("pred {} {:.1} %", m.pred, 100.0 * m.prob),
                (x as i32 + 4, y as i32 + 19),
                red,
            ))
            .map_err(err)?;
        }
        if worst.is_empty() {
            root.draw(&Text::new("no mistakes", (10, 10), ("sans-serif", 18)))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Horizontal bars: accuracy with and without each attribute, largest gap on top.
pub fn subgroups(path: &Path, groups: &[Subgroup]) -> Result<(), String> {
    super::font::ensure()?;
    let shown: Vec<&Subgroup> = groups
        .iter()
        .filter(|g| g.n_with > 0 && g.n_without > 0)
        .take(40)
        .collect();
    let n = shown.len().max(1);
    super::png::AtomicPng::new(path, (900, 80 + 22 * n as u32)).draw(|root| {
        root.fill(&WHITE).map_err(err)?;
        let lo = shown
            .iter()
            .flat_map(|g| [g.acc_with, g.acc_without])
            .fold(1.0f64, f64::min);
        let lo = (lo - 0.05).max(0.0);
        let names: Vec<String> = shown.iter().map(|g| g.attribute.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "accuracy with (blue) / without (orange) each attribute",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(170)
            .build_cartesian_2d(lo..1.0, 0.0..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| {
                names
                    .get(n.saturating_sub(1).saturating_sub(*v as usize))
                    .cloned()
                    .unwrap_or_default()
            })
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let orange = RGBColor(230, 140, 30);
        for (i, g) in shown.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(lo, y + 0.52), (g.acc_with, y + 0.92)],
                    BLUE.mix(0.7).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(lo, y + 0.08), (g.acc_without, y + 0.48)],
                    orange.filled(),
                )))
                .map_err(err)?;
        }
        Ok(())
    })
}
