//! Adding a per-channel bias to `(N, C, H, W)`, optionally followed by ReLU6, as one op.
//! candle's `broadcast_add` walks the broadcast index by index and its backward always
//! reduces the gradient for the bias; and every separate op costs a full-size buffer going
//! forward and another (a zero tensor plus an addition) going backward. Here the bias and
//! the activation are one pass each way, and the bias gradient is only summed when the bias
//! takes part in the gradient graph.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};

/// What follows the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    /// `max(·, 0)`; the gradient passes where `y > 0`, as PyTorch's `threshold_backward`.
    Relu,
    /// ReLU under guided backpropagation: only positive gradients pass as well.
    GuidedRelu,
    /// `min(max(·, 0), 6)`; the gradient passes where `0 < y < 6`, as PyTorch's.
    Relu6,
    /// ReLU6 under guided backpropagation: only positive gradients pass as well.
    GuidedRelu6,
}

impl Act {
    /// ReLU, guided or not.
    pub fn relu(guided: bool) -> Act {
        if guided {
            Act::GuidedRelu
        } else {
            Act::Relu
        }
    }

    /// ReLU6, guided or not.
    pub fn relu6(guided: bool) -> Act {
        if guided {
            Act::GuidedRelu6
        } else {
            Act::Relu6
        }
    }

    /// The upper clip: 6 for ReLU6, none (infinity) for ReLU.
    fn ceiling<T: WithDType>(self) -> T {
        match self {
            Act::Relu6 | Act::GuidedRelu6 => T::from_f64(6.0),
            _ => T::from_f64(f64::INFINITY),
        }
    }

    fn guided(self) -> bool {
        matches!(self, Act::GuidedRelu | Act::GuidedRelu6)
    }
}

/// `act(v)` for a rectifying `act` (`v` already has its bias).
#[inline(always)]
fn rectify<T: WithDType>(v: T, hi: T) -> T {
    let v = if v < T::zero() { T::zero() } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// `y ← act(y)` in place.
pub(crate) fn apply_act<T: WithDType>(y: &mut [T], act: Act) {
    if act == Act::Identity {
        return;
    }
    let hi = act.ceiling::<T>();
    super::simd(y, |y| y.iter_mut().for_each(|v| *v = rectify(*v, hi)));
}

struct AddBias(Act);

/// `y ← act(y + b[c])` in place, for `y` of shape `(N, C, H·W)`.
pub(crate) fn epilogue<T: WithDType>(y: &mut [T], b: &[T], c: usize, hw: usize, act: Act) {
    let hi = act.ceiling::<T>();
    super::simd(y, |y| {
        for (plane, i) in y.chunks_mut(hw).zip((0..c).cycle()) {
            let bi = b[i];
            if act == Act::Identity {
                plane.iter_mut().for_each(|v| *v += bi);
            } else {
                plane.iter_mut().for_each(|v| *v = rectify(*v + bi, hi));
            }
        }
    });
}

/// Whether ReLU6's gradient passes at an output `y`: `0 < y < 6`, which holds exactly
/// where `0 < x < 6` (there `y = x`), as PyTorch's `hardtanh_backward`.
#[inline(always)]
pub(crate) fn relu6_passes<T: WithDType>(y: T) -> bool {
    (y > T::zero()) & (y < T::from_f64(6.0))
}

/// `g ← 0` where ReLU6 was flat (its output `y` is 0 or 6).
pub(crate) fn relu6_mask<T: WithDType>(g: &mut [T], y: &[T]) {
    act_mask(g, y, Act::Relu6)
}

/// The gradient before `act`, from the gradient after it and the op's output `y`.
pub(crate) fn act_grad(gy: &Tensor, y: &Tensor, act: Act) -> candle_core::Result<Tensor> {
    match act {
        Act::Identity => Ok(gy.clone()),
        act => gy.contiguous()?.apply_op2_no_bwd(y, &ActGrad(act)),
    }
}

/// The gradient of a per-channel bias `b` from the gradient `g` after it (`(N, C, H, W)`),
/// only when the bias takes part in the gradient graph.
pub(crate) fn bias_grad(g: &Tensor, b: &Tensor) -> candle_core::Result<Option<Tensor>> {
    if b.track_op() {
        Ok(Some(g.sum((0, 2, 3))?.reshape(b.shape())?))
    } else {
        Ok(None)
    }
}

/// Operands (gy, y): the gradient before the activation, from its output `y`.
struct ActGrad(Act);

/// Whether the gradient passes a rectifying `act` at output `y` with incoming gradient
/// `g`: where `0 < y < ceiling` (exactly where the input was in that range, since `y`
/// equals the input there) and, guided, where `g` is positive.
#[inline(always)]
fn passes<T: WithDType>(g: T, y: T, (hi, guided): (T, bool)) -> bool {
    (y > T::zero()) & (y < hi) & (!guided | (g > T::zero()))
}

/// The gradient before a rectifying `act` from the gradient `gy` after it and its output
/// `y`, in one pass.
pub(crate) fn act_backward<T: WithDType>(gy: &[T], y: &[T], act: Act) -> Vec<T> {
    let rule = (act.ceiling::<T>(), act.guided());
    super::simd_with(|| {
        gy.iter()
            .zip(y)
            .map(|(&gv, &v)| if passes(gv, v, rule) { gv } else { T::zero() })
            .collect()
    })
}

/// [`act_backward`] in place: `g ← 0` where the gradient does not pass.
pub(crate) fn act_mask<T: WithDType>(g: &mut [T], y: &[T], act: Act) {
    let rule = (act.ceiling::<T>(), act.guided());
    super::simd(g, |g| {
        for (gv, &v) in g.iter_mut().zip(y) {
            let g0 = *gv;
            *gv = if passes(g0, v, rule) { g0 } else { T::zero() };
        }
    });
}

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "cnnscope-add-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l1.shape().dims4()?;
        if l2.shape().elem_count() != c {
            candle_core::bail!("bias {:?} does not fit {:?}", l2.shape(), l1.shape())
        }
        fn run<T: WithDType>(x: &[T], b: &[T], c: usize, hw: usize, act: Act) -> Vec<T> {
            let mut y = x.to_vec();
            epilogue(&mut y, b, c, hw, act);
            y
        }
        let out = dispatch!("bias add", (s1, l1), (s2, l2), |x, b| run(x, b, c, h * w, self.0));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = act_grad(gy, res, self.0)?;
        let gb = bias_grad(&g, b)?;
        Ok((Some(g), gb))
    }
}

impl CustomOp2 for ActGrad {
    fn name(&self) -> &'static str {
        "cnnscope-relu-grad-from-output"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let act = self.0;
        let out = dispatch!("relu backward", (s1, l1), (s2, l2), |g, y| act_backward(g, y, act));
        Ok((out, l1.shape().clone()))
    }
}

/// `act(x + b[c])` for `x` of shape `(N, C, H, W)` and `b` with `C` elements.
pub fn bias_act(x: &Tensor, b: &Tensor, act: Act) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, AddBias(act))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_broadcast_add() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 4, 5), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, 3, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f64, 1.0, (2, 3, 4, 5), &dev).unwrap();
        let ours = bias_act(&x, &b, Act::Identity).unwrap();
        let theirs = x.broadcast_add(&b.reshape((1, 3, 1, 1)).unwrap()).unwrap();
        let d = (&ours - &theirs)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(d < 1e-12);
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [x.as_tensor(), b.as_tensor()] {
            let d = (g1.get(v).unwrap() - g2.get(v).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap();
            assert!(d.to_scalar::<f64>().unwrap() < 1e-10);
        }
    }

    /// Bias + ReLU6 (and its guided form) against the separate ops.
    #[test]
    fn fused_relu6_matches_separate_ops() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f64, 4.0, (2, 3, 5, 6), &dev).unwrap() + 3.0).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, 3, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f64, 1.0, (2, 3, 5, 6), &dev).unwrap();
        for (act, guided) in [(Act::Relu6, false), (Act::GuidedRelu6, true)] {
            let ours = bias_act(&x, &b, act).unwrap();
            let mut theirs = crate::ops::relu6(&x.broadcast_add(&b.reshape((1, 3, 1, 1)).unwrap()).unwrap()).unwrap();
            if guided {
                theirs = crate::ops::guided(&theirs).unwrap();
            }
            let d = (&ours - &theirs)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert_eq!(d, 0.0);
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), b.as_tensor()] {
                let d = (g1.get(v).unwrap() - g2.get(v).unwrap())
                    .unwrap()
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                assert!(d.to_scalar::<f64>().unwrap() < 1e-10, "{act:?}");
            }
        }
    }
}
