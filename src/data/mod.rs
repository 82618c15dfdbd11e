//! Reading data: IDX digit files and images.

pub mod dataset;
pub mod idx;
pub mod image;
pub mod npy;
