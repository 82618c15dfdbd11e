//! Custom candle ops whose forward and backward we control.

pub mod bias;
pub mod conv;
pub mod depthwise;
pub mod guided;
pub mod maxpool;
pub mod pointwise;
pub mod relu6;

pub use conv::conv2d;
pub use depthwise::depthwise_conv2d;
pub use guided::guided;
pub use maxpool::max_pool2d;
pub use pointwise::conv1x1;
pub use relu6::relu6;

/// The slice a contiguous layout covers.
pub(crate) fn contiguous_slice<'a, T: candle_core::WithDType>(
    v: &'a [T],
    l: &candle_core::Layout,
) -> candle_core::Result<&'a [T]> {
    let (s, e) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("custom op: operands must be contiguous".into()))?;
    Ok(&v[s..e])
}
