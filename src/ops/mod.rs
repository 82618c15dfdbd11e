//! Custom candle ops whose forward and backward we control.

pub mod maxpool;

pub use maxpool::max_pool2d;
