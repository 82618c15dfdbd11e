//! Custom candle ops whose forward and backward we control.

pub mod guided;
pub mod maxpool;

pub use guided::guided;
pub use maxpool::max_pool2d;
