//! A copy of the photo with each face boxed, its five landmarks dotted and, when given, its
//! label (e.g. `male 97.1 %`) written above the box. Line width and text size follow the
//! photo's size so a 4000-pixel picture reads as well as a 500-pixel one.

use image::RgbImage;
use plotters::prelude::*;

use super::Face;

/// One face to draw and what to write on it.
#[derive(Debug, Clone)]
pub struct Mark {
    pub face: Face,
    /// Text above the box; none draws the box alone.
    pub label: Option<String>,
    /// Picks the box colour (a class index); none is the detector's own colour.
    pub class: Option<usize>,
    /// Dot the five landmarks.
    pub landmarks: bool,
}

const CLASS_COLOURS: [RGBColor; 6] = [
    RGBColor(230, 25, 75),
    RGBColor(0, 130, 200),
    RGBColor(60, 180, 75),
    RGBColor(245, 130, 48),
    RGBColor(145, 30, 180),
    RGBColor(70, 240, 240),
];
const DETECTOR_COLOUR: RGBColor = RGBColor(0, 220, 0);
/// OpenCV's sample colours for the five points: eyes, nose, mouth corners.
const LANDMARK_COLOURS: [RGBColor; 5] = [
    RGBColor(255, 0, 0),
    RGBColor(0, 0, 255),
    RGBColor(0, 255, 0),
    RGBColor(255, 0, 255),
    RGBColor(0, 255, 255),
];

/// Draws `marks` on a copy of `img`. Text needs a font (see `report::font`): without one the
/// boxes are still drawn and the returned warning says why the labels are missing.
pub fn annotate(img: &RgbImage, marks: &[Mark]) -> (RgbImage, Option<String>) {
    let (w, h) = img.dimensions();
    let mut buf = img.as_raw().clone();
    let font = crate::report::font::ensure();
    let warning = match (&font, marks.iter().any(|m| m.label.is_some())) {
        (Err(e), true) => Some(format!("labels not drawn: {e}")),
        _ => None,
    };
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let long = w.max(h) as f32;
        let stroke = ((long / 300.0).round() as u32).clamp(2, 12);
        let text_px = ((long / 28.0).round() as u32).clamp(12, 96);
        for m in marks {
            let colour = m
                .class
                .map_or(DETECTOR_COLOUR, |c| CLASS_COLOURS[c % CLASS_COLOURS.len()]);
            let [x, y, bw, bh] = m.face.bbox;
            let (x0, y0) = (x.round() as i32, y.round() as i32);
            let (x1, y1) = ((x + bw).round() as i32, (y + bh).round() as i32);
            let _ = root.draw(&Rectangle::new(
                [(x0, y0), (x1, y1)],
                colour.stroke_width(stroke),
            ));
            let r = (stroke as i32 + 1).max((bw / 40.0).round() as i32);
            let dots = if m.landmarks {
                &m.face.landmarks[..]
            } else {
                &[]
            };
            for (p, c) in dots.iter().zip(LANDMARK_COLOURS) {
                let _ = root.draw(&Circle::new(
                    (p[0].round() as i32, p[1].round() as i32),
                    r,
                    c.filled(),
                ));
            }
            if let (Some(text), Ok(())) = (&m.label, &font) {
                let style = TextStyle::from(("sans-serif", text_px).into_font()).color(&WHITE);
                let (tw, th) = root
                    .estimate_text_size(text, &style)
                    .unwrap_or((text_px * text.len() as u32 / 2, text_px));
                let pad = (text_px / 6) as i32;
                // above the box, or inside its top when the box touches the photo's top
                let top = if y0 - th as i32 - 2 * pad >= 0 {
                    y0 - th as i32 - 2 * pad
                } else {
                    y0.max(0)
                };
                let _ = root.draw(&Rectangle::new(
                    [
                        (x0, top),
                        (x0 + tw as i32 + 2 * pad, top + th as i32 + 2 * pad),
                    ],
                    colour.filled(),
                ));
                let _ = root.draw(&Text::new(text.clone(), (x0 + pad, top + pad), style));
            }
        }
        let _ = root.present();
    }
    let out = RgbImage::from_raw(w, h, buf).unwrap_or_else(|| img.clone());
    (out, warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_box_is_drawn_where_the_face_is_and_nowhere_else() {
        let img = RgbImage::from_pixel(200, 160, image::Rgb([10, 10, 10]));
        let face = Face {
            bbox: [40.0, 50.0, 60.0, 70.0],
            score: 0.95,
            landmarks: [
                [60.0, 75.0],
                [80.0, 75.0],
                [70.0, 90.0],
                [62.0, 105.0],
                [78.0, 105.0],
            ],
        };
        let (out, _) = annotate(
            &img,
            &[Mark {
                face,
                label: None,
                class: None,
                landmarks: true,
            }],
        );
        assert_eq!(out.dimensions(), img.dimensions());
        // the box's left edge at x = 40, halfway down
        assert_eq!(out.get_pixel(40, 85).0, [0, 220, 0]);
        // the left eye's dot
        assert_eq!(out.get_pixel(60, 75).0, [255, 0, 0]);
        // far from the face the photo is untouched
        assert_eq!(out.get_pixel(150, 20).0, [10, 10, 10]);
        assert_eq!(out.get_pixel(70, 65).0, [10, 10, 10]);
    }
}
