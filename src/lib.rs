//! cnnscope: a static-site generator for interpretability galleries of convolutional networks.
//!
//! The pipeline: [`config`] (parse and validate `gallery.yaml`) → [`plan`] (units of work
//! and page paths) → compute ([`build`]'s phases over [`models`], [`methods`], [`ops`],
//! through the [`cache`]) → [`pages`] (typed views) and [`render`] (pictures, markdown,
//! templates) → the output folder.

pub mod analysis;
pub mod bench;
pub mod build;
pub mod cache;
pub mod config;
pub mod content;
pub mod data;
pub mod error;
pub mod init;
pub mod methods;
pub mod metrics;
pub mod models;
pub mod ops;
pub mod pages;
pub mod plan;
pub mod progress;
pub mod render;
pub mod serve;
pub mod train;

pub use error::{Error, Result};
