//! Turning arrays and text into what the site shows: colour maps, image grids, plots,
//! markdown and templates.

pub mod attribution;
pub mod colormap;
pub mod examples;
pub mod grid;
pub mod markdown;
pub mod pictures;
pub mod plot;
pub mod shortcodes;
pub mod templates;
