//! Reading data: IDX digit files and images.

pub mod idx;
pub mod dataset;
pub mod image;
pub mod npy;
