//! Custom candle ops whose forward and backward we control.

pub mod depthwise;
pub mod guided;
pub mod maxpool;

pub use depthwise::depthwise_conv2d;
pub use guided::guided;
pub use maxpool::max_pool2d;
