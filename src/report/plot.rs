//! Training curves: loss and accuracy per epoch, training against validation.

use std::path::Path;

use plotters::prelude::*;

use crate::train::history::EpochRecord;

/// Reads one figure out of an epoch's record.
type Field = fn(&EpochRecord) -> f64;

/// Writes `curves.png`: two panels, loss and accuracy, train vs validation.
pub fn curves(path: &Path, history: &[EpochRecord]) -> Result<(), String> {
    super::font::ensure()?;
    if history.is_empty() {
        return Err("no completed epoch".into());
    }
    super::png::AtomicPng::new(path, (1200, 480)).draw(|root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 2));
        let epochs = history.len().max(2) as f64;
        let series: [(&str, Field, Field); 2] = [
            ("loss", |r| r.train_loss, |r| r.val_loss),
            ("accuracy", |r| r.train_acc, |r| r.val_acc),
        ];
        for (area, (name, train, valid)) in panels.iter().zip(series) {
            let vals: Vec<f64> = history
                .iter()
                .flat_map(|r| [train(r), valid(r)])
                .filter(|v| v.is_finite())
                .collect();
            let (lo, hi) = vals
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let pad = ((hi - lo) * 0.1).max(1e-3);
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name} per epoch"), ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(1.0..epochs, (lo - pad)..(hi + pad))
                .map_err(|e| e.to_string())?;
            // epochs are whole numbers: ticks on them only (no "1.5")
            let whole = |x: &f64| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .x_labels((epochs as usize).clamp(2, 20))
                .x_label_formatter(&whole)
                .x_desc("epoch")
                .y_desc(name)
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| e.to_string())?;
            for (label, f, color) in [("train", train, BLUE), ("validation", valid, RED)] {
                let pts: Vec<(f64, f64)> = history.iter().map(|r| (r.epoch as f64, f(r))).collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
