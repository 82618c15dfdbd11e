//! Custom candle ops whose forward and backward we control.

/// Runs `$body` on the operands' contiguous slices as f32, or as f64 (the dtypes our ops
/// handle), and wraps its result in the same dtype; other or mixed dtypes are refused,
/// naming `$op`. `dispatch!("op", (s1, l1), (s2, l2), |x, k| run(x, k))`. Defined before
/// the modules below, which see it by textual scope.
macro_rules! dispatch {
    ($op:literal, $(($s:expr, $l:expr)),+, |$($v:ident),+| $body:expr) => {
        match ($($s,)+) {
            ($(candle_core::CpuStorage::F32($v),)+) => {
                $(let $v = $crate::ops::contiguous_slice($v, $l)?;)+
                candle_core::CpuStorage::F32($body)
            }
            ($(candle_core::CpuStorage::F64($v),)+) => {
                $(let $v = $crate::ops::contiguous_slice($v, $l)?;)+
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!(concat!($op, ": f32 or f64 operands of one dtype")),
        }
    };
}

pub mod affine;
pub mod bias;
pub mod conv;
pub mod depthwise;
pub mod guided;
pub mod linear;
pub mod maxpool;
pub mod mbconv;
pub mod pointwise;
pub mod relu;
pub mod relu6;
pub mod residual;
pub(crate) mod scratch;
pub mod winograd;

pub use conv::{conv2d, conv2d_bias_act};
pub use depthwise::depthwise_conv2d;
pub use guided::guided;
pub use maxpool::max_pool2d;
pub use pointwise::conv1x1;
pub use relu::{add_relu, relu};
pub use relu6::relu6;

/// For kernel column `kx` of a convolution over rows `w` wide with `left` padding and
/// stride `s` (giving `ow` outputs): the outputs `lo..hi` whose input column
/// `ox·s + shift` lies inside the row, and `shift = kx − left`.
pub(crate) fn column_range(w: usize, ow: usize, kx: usize, left: usize, s: usize) -> (usize, usize, isize) {
    let (shift, s) = (kx as isize - left as isize, s as isize);
    let lo = if shift >= 0 { 0 } else { (-shift + s - 1) / s };
    let last = w as isize - 1 - shift;
    let hi = if last < 0 { 0 } else { (last / s + 1).min(ow as isize) };
    (lo as usize, hi.max(lo) as usize, shift)
}

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

/// A contiguous CPU tensor's values, read through `f` while its storage is locked (no
/// copy, unlike `to_vec1`).
pub(crate) fn with_values<T: candle_core::WithDType, R>(
    t: &candle_core::Tensor,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        candle_core::bail!("custom op: CPU tensors only")
    };
    f(contiguous_slice(s.as_slice::<T>()?, l)?)
}

/// Runs an element-wise loop compiled with AVX2 where the CPU has it (the default build
/// targets plain x86-64, whose vectors are half as wide). The loop must not rely on fused
/// multiply-add, so both versions give the same bits.
#[inline(always)]
pub(crate) fn simd<T>(data: &mut [T], f: impl FnOnce(&mut [T])) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn with_avx2<T>(data: &mut [T], f: impl FnOnce(&mut [T])) {
            f(data)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { with_avx2(data, f) };
        return;
    }
    f(data)
}

/// [`simd`] for a loop that makes its own output.
#[inline(always)]
pub(crate) fn simd_with<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { with_avx2(f) };
    }
    f()
}

/// The largest absolute difference of two tensors of one shape, as f64 (for the ops' tests).
#[cfg(test)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}
