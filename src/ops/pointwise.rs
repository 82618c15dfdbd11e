//! 1×1 convolution, `(N, C, H, W)` by `(O, C)`, as one matrix product per image, with a
//! backward pass that computes the weight gradient only when the weight takes part in the
//! gradient graph. candle's matmul backward always computes both operands' gradients, which
//! doubled the matrix work of every 1×1 convolution when only input gradients are wanted.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};

use super::bias::{act_grad, bias_grad, epilogue, Act};

use super::contiguous_slice as slice;
use rayon::prelude::*;

/// Row-major views for `gemm`: `dst (m×n) = lhs (m×k) · rhs (k×n)`, each operand given by
/// its row and column strides. Accumulates into `dst` when `acc`.
pub(crate) fn matmul<T: WithDType>(
    mnk: (usize, usize, usize),
    dst: &mut [T],
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    acc: bool,
) {
    matmul_into(mnk, dst, mnk.1, lhs, lhs_strides, rhs, rhs_strides, acc)
}

/// [`matmul`] into a destination whose rows are `dst_rs` apart (a block of a wider matrix).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_into<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    dst_rs: usize,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    acc: bool,
) {
    assert!(m > 0 && n > 0 && n <= dst_rs && dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: `dst` is exclusive and long enough (checked just above).
    unsafe {
        gemm_raw(
            (m, n, k),
            dst.as_mut_ptr(),
            dst_rs,
            lhs,
            lhs_strides,
            rhs,
            rhs_strides,
            acc,
        )
    }
}

/// `batch` products `lhs (m×k) · rhs[b] (k×n)`, `rhs[b]` starting `rhs_step` apart, into a
/// new `(batch, m, n)` buffer, as parallel blocks ([`blocks`]) each computed on one thread.
/// The buffer is not zeroed first: gemm writes every element of its destination without
/// reading it, and zeroing is a pass over memory as long as the product's own output.
pub(crate) fn matmul_batch<T: WithDType>(
    batch: usize,
    (m, n, k): (usize, usize, usize),
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    rhs_step: usize,
    (rhs_rs, rhs_cs): (usize, usize),
) -> Vec<T> {
    let len = batch * m * n;
    if len == 0 || k == 0 {
        return vec![T::zero(); len];
    }
    let mut out: Vec<T> = Vec::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    blocks(batch, m, n, k).into_par_iter().for_each(|(b, rows, cols)| {
        // SAFETY: the blocks are disjoint and inside image `b`'s `m × n` block of the
        // capacity; gemm writes all of each (`acc` false: nothing is read), so every element
        // is set before `set_len`.
        unsafe {
            gemm_serial(
                (rows.len(), cols.len(), k),
                dst.get().add(b * m * n + rows.start * n + cols.start),
                n,
                &lhs[rows.start * lhs_rs..],
                (lhs_rs, lhs_cs),
                &rhs[b * rhs_step + cols.start * rhs_cs..],
                (rhs_rs, rhs_cs),
                false,
            )
        };
    });
    // SAFETY: every element was written above.
    unsafe { out.set_len(len) };
    out
}

/// A raw pointer tasks may share, each writing its own disjoint part of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: only used for disjoint writes, which callers vouch for.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// How many parallel tasks an op of `work` multiply-adds over `items` independent items
/// (images, tiles) should split each item into: none when the items alone can keep every
/// thread busy (splitting an item repeats work: packing, column matrices), else about two
/// tasks per thread when the work is worth it. One split per op rather than one per matrix
/// product: threads are woken once.
pub(crate) fn splits(items: usize, work: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads > 1 && work > 1 << 20 && items < threads {
        (2 * threads).div_ceil(items.max(1)).max(1)
    } else {
        1
    }
}

/// `parts` near-equal consecutive ranges covering `0..len`.
pub(crate) fn ranges(len: usize, parts: usize) -> impl Iterator<Item = std::ops::Range<usize>> + Clone {
    let parts = parts.clamp(1, len.max(1));
    (0..parts).map(move |i| i * len / parts..(i + 1) * len / parts)
}

/// The blocks `(image, rows, columns)` of `batch` products of `m × n` (inner size `k`) to
/// run in parallel: columns are split while blocks stay at least 64 wide, then rows (at
/// least 16, a kernel's height).
pub(crate) fn blocks(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<(usize, std::ops::Range<usize>, std::ops::Range<usize>)> {
    let per = splits(batch, batch * m * n * k);
    let cs = per.min(n / 64).max(1);
    let rs = per.div_ceil(cs).min(m / 16).max(1);
    (0..batch)
        .flat_map(|b| ranges(m, rs).flat_map(move |r| ranges(n, cs).map(move |c| (b, r.clone(), c))))
        .collect()
}

/// `dst (m×n, rows `dst_rs` apart) = lhs · rhs`, plus `dst` when `acc`.
///
/// # Safety
/// `dst` must be valid for writes (and for reads when `acc`) of every element of the
/// `m × n` block with rows `dst_rs` apart, and not aliased.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: WithDType>(
    mnk: (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    acc: bool,
) {
    let (m, n, k) = mnk;
    let threads = rayon::current_num_threads();
    // Small products are not worth waking other threads for.
    let par = threads > 1 && m * n * k > 1 << 18;
    gemm_on(mnk, dst, dst_rs, lhs, lhs_strides, rhs, rhs_strides, acc, par)
}

/// [`gemm_raw`] on the calling thread only: for products that are themselves one of
/// several tasks run in parallel (one rayon split per op instead of one per product).
///
/// # Safety
/// As [`gemm_raw`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_serial<T: WithDType>(
    mnk: (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    lhs: &[T],
    lhs_strides: (usize, usize),
    rhs: &[T],
    rhs_strides: (usize, usize),
    acc: bool,
) {
    gemm_on(mnk, dst, dst_rs, lhs, lhs_strides, rhs, rhs_strides, acc, false)
}

/// # Safety
/// As [`gemm_raw`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_on<T: WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: usize,
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
    acc: bool,
    parallel: bool,
) {
    // gemm reads through raw pointers: check every index it can touch.
    assert!(m > 0 && n > 0 && k > 0 && n <= dst_rs);
    assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    let par = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every index gemm reads; the caller vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            acc,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        )
    }
}

/// The forward op: `y[n] = w · x[n]`.
struct Pointwise;
/// `gx[n] = wᵀ · gy[n]`; operands (gy, w).
struct GradInput;
/// `gw = Σₙ gy[n] · x[n]ᵀ`; operands (gy, x).
struct GradWeight;

fn dims(x: &Shape) -> candle_core::Result<(usize, usize, usize)> {
    let (n, c, h, w) = x.dims4()?;
    Ok((n, c, h * w))
}

impl CustomOp2 for Pointwise {
    fn name(&self) -> &'static str {
        "cnnscope-conv1x1"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, hw) = dims(l1.shape())?;
        let (o, wc) = l2.shape().dims2()?;
        if wc != c {
            candle_core::bail!("1×1 conv: weight {:?} does not fit input {:?}", l2.shape(), l1.shape())
        }
        let (_, _, h, w) = l1.shape().dims4()?;
        fn run<T: WithDType>(x: &[T], wt: &[T], n: usize, c: usize, o: usize, hw: usize) -> Vec<T> {
            matmul_batch(n, (o, hw, c), wt, (c, 1), x, c * hw, (hw, 1))
        }
        let out = dispatch!("1×1 conv", (s1, l1), (s2, l2), |a, b| run(a, b, n, c, o, hw));
        Ok((out, Shape::from((n, o, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let gx = gy.apply_op2_no_bwd(w, &GradInput)?;
        let gw = if w.track_op() {
            Some(gy.apply_op2_no_bwd(x, &GradWeight)?)
        } else {
            None
        };
        Ok((Some(gx), gw))
    }
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "cnnscope-conv1x1-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, o, hw) = dims(l1.shape())?;
        let (_, c) = l2.shape().dims2()?;
        let (_, _, h, w) = l1.shape().dims4()?;
        fn run<T: WithDType>(gy: &[T], wt: &[T], n: usize, c: usize, o: usize, hw: usize) -> Vec<T> {
            matmul_batch(n, (c, hw, o), wt, (1, c), gy, o * hw, (hw, 1))
        }
        let out = dispatch!("1×1 conv", (s1, l1), (s2, l2), |a, b| run(a, b, n, c, o, hw));
        Ok((out, Shape::from((n, c, h, w))))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "cnnscope-conv1x1-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, o, hw) = dims(l1.shape())?;
        let (_, c, _) = dims(l2.shape())?;
        fn run<T: WithDType>(gy: &[T], x: &[T], n: usize, c: usize, o: usize, hw: usize) -> Vec<T> {
            let mut gw = vec![T::zero(); o * c];
            for (i, (gyi, xi)) in gy.chunks(o * hw).zip(x.chunks(c * hw)).take(n).enumerate() {
                matmul((o, c, hw), &mut gw, gyi, (hw, 1), xi, (1, hw), i > 0);
            }
            gw
        }
        let out = dispatch!("1×1 conv", (s1, l1), (s2, l2), |a, b| run(a, b, n, c, o, hw));
        Ok((out, Shape::from((o, c))))
    }
}

/// `(N, C, H, W)` by `(O, C)` → `(N, O, H, W)`.
pub fn conv1x1(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Pointwise)
}

/// The 1×1 convolution with its bias and activation as one op: one graph node (one output
/// buffer forward, one gradient accumulation backward) instead of two.
struct PointwiseBias(Act);

impl CustomOp3 for PointwiseBias {
    fn name(&self) -> &'static str {
        "cnnscope-conv1x1-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (mut y, shape) = Pointwise.cpu_fwd(s1, l1, s2, l2)?;
        let (_, o, h, w) = shape.dims4()?;
        if l3.shape().elem_count() != o {
            candle_core::bail!("1×1 conv: bias {:?} does not fit {o} outputs", l3.shape())
        }
        match (&mut y, s3) {
            (CpuStorage::F32(y), CpuStorage::F32(b)) => epilogue(y, slice(b, l3)?, o, h * w, self.0),
            (CpuStorage::F64(y), CpuStorage::F64(b)) => epilogue(y, slice(b, l3)?, o, h * w, self.0),
            _ => candle_core::bail!("1×1 conv: f32 or f64 operands of one dtype"),
        }
        Ok((y, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = act_grad(gy, res, self.0)?.contiguous()?;
        let gx = g.apply_op2_no_bwd(w, &GradInput)?;
        let gw = if w.track_op() {
            Some(g.apply_op2_no_bwd(x, &GradWeight)?)
        } else {
            None
        };
        let gb = bias_grad(&g, b)?;
        Ok((Some(gx), gw, gb))
    }
}

/// `act(w · x + b)` for `x` `(N, C, H, W)`, `w` `(O, C)` and `b` with `O` elements.
pub fn conv1x1_bias_act(x: &Tensor, w: &Tensor, b: &Tensor, act: Act) -> candle_core::Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, PointwiseBias(act))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_diff;
    use candle_core::{Device, Var};

    /// Against candle's own conv2d, forward and both gradients, on odd sizes and batches.
    #[test]
    fn matches_candle_conv() {
        let dev = Device::Cpu;
        for &(n, c, o, h, w) in &[(1, 3, 5, 7, 9), (3, 16, 8, 5, 5), (2, 1, 1, 1, 13), (2, 40, 24, 11, 6)] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let k = Var::from_tensor(&Tensor::randn(0f64, 1.0, (o, c), &dev).unwrap()).unwrap();
            let probe = Tensor::randn(0f64, 1.0, (n, o, h, w), &dev).unwrap();
            let ours = conv1x1(&x, &k).unwrap();
            let theirs = x.conv2d(&k.reshape((o, c, 1, 1)).unwrap(), 0, 1, 1, 1).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12);
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), k.as_tensor()] {
                let (a, b) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(
                    max_diff(a, &b.reshape(a.shape()).unwrap()) < 1e-10,
                    "{n} {c} {o} {h} {w}"
                );
            }
        }
    }

    #[test]
    fn no_weight_gradient_for_a_constant_weight() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 3, 3), &dev).unwrap()).unwrap();
        let k = Tensor::randn(0f32, 1.0, (6, 4), &dev).unwrap();
        let g = conv1x1(&x, &k).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(&k).is_none());
        assert!(g.get(x.as_tensor()).is_some());
    }

    /// The fused op against the separate ones, every activation, all three gradients.
    #[test]
    fn fused_bias_and_activation_match_separate_ops() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 5, 4, 3), &dev).unwrap()).unwrap();
        let k = Var::from_tensor(&Tensor::randn(0f64, 2.0, (6, 5), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&(Tensor::randn(0f64, 1.0, 6, &dev).unwrap() + 2.0).unwrap()).unwrap();
        let probe = Tensor::randn(0f64, 1.0, (2, 6, 4, 3), &dev).unwrap();
        for act in [Act::Identity, Act::Relu6, Act::GuidedRelu6] {
            let ours = conv1x1_bias_act(&x, &k, &b, act).unwrap();
            let theirs = crate::ops::bias::bias_act(&conv1x1(&x, &k).unwrap(), &b, act).unwrap();
            assert!(max_diff(&ours, &theirs) == 0.0, "{act:?}");
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), k.as_tensor(), b.as_tensor()] {
                assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-12, "{act:?}");
            }
        }
    }
}
