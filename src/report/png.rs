//! Pictures drawn in memory and written whole: a full disk or a crash while a chart is being
//! saved leaves the previous picture, never half a PNG.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// An RGB canvas for plotters, saved to `path` atomically by [`AtomicPng::save`].
pub struct AtomicPng {
    path: PathBuf,
    size: (u32, u32),
    buf: Vec<u8>,
}

impl AtomicPng {
    pub fn new(path: &Path, (w, h): (u32, u32)) -> Self {
        AtomicPng {
            path: path.to_path_buf(),
            size: (w, h),
            buf: vec![255; w as usize * h as usize * 3],
        }
    }

    /// A canvas starting from `img` (thumbnails already placed, say).
    pub fn from_rgb(path: &Path, img: image::RgbImage) -> Self {
        AtomicPng {
            path: path.to_path_buf(),
            size: img.dimensions(),
            buf: img.into_raw(),
        }
    }

    /// Draws with `f` on the canvas, then saves it (see [`AtomicPng::save`]).
    pub fn draw(
        mut self,
        f: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
    ) -> Result<(), String> {
        {
            let root = BitMapBackend::with_buffer(&mut self.buf, self.size).into_drawing_area();
            f(root.clone())?;
            root.present().map_err(|e| e.to_string())?;
        }
        self.save()
    }

    /// Encodes the canvas as PNG and writes it through a temporary file and a rename.
    fn save(self) -> Result<(), String> {
        let (w, h) = self.size;
        let img = image::RgbImage::from_raw(w, h, self.buf).ok_or("canvas size")?;
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| e.to_string())?;
        crate::atomic_file::write(&self.path, &png)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }
}
