//! cnnscope: a static-site generator for interpretability galleries of convolutional networks.
//!
//! The pipeline: [`config`] (parse and validate `gallery.yaml`) → [`plan`] (which pages and
//! artifacts) → compute ([`models`], [`ops`]) → [`render`] (pictures, markdown, templates)
//! → [`site`] (write the output).

pub mod bench;
pub mod cache;
pub mod config;
pub mod content;
pub mod data;
pub mod error;
pub mod explain;
pub mod methods;
pub mod models;
pub mod ops;
pub mod plan;
pub mod render;
pub mod site;
pub mod train;

pub use error::{Error, Result};
