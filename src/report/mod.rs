//! Pictures people open after a run: training curves (and later evaluation charts), drawn
//! with plotters into PNG files.

pub mod charts;
pub mod font;
pub mod plot;
pub mod png;
