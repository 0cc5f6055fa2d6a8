//! plotters draws text with a TrueType font registered at run time: `$FACEATTR_FONT`, else
//! DejaVu Sans where Debian/Ubuntu (`fonts-dejavu-core`) or Fedora put it.

use std::sync::OnceLock;

const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers the font once; Err says why no text can be drawn.
pub fn ensure() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut tried = Vec::new();
        let paths: Vec<String> = std::env::var("FACEATTR_FONT")
            .into_iter()
            .chain(CANDIDATES.iter().map(|s| s.to_string()))
            .collect();
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font(
                    "sans-serif",
                    plotters::style::FontStyle::Normal,
                    leaked,
                )
                .map_err(|_| format!("{p} is not a usable TrueType font"));
            }
            tried.push(p);
        }
        Err(format!(
            "no font found (tried {}); install fonts-dejavu-core or set FACEATTR_FONT",
            tried.join(", ")
        ))
    })
    .clone()
}
