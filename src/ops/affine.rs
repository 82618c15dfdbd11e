//! `x·s[c] + t[c]` for `(N, C, H, W)`: an inference-mode batch norm that is a named layer
//! (so it cannot be folded into the convolution before it).
//!
//! candle runs it as a broadcast multiplication and a broadcast addition, and their
//! backward passes compute the gradient of the per-channel constants too (full-size
//! products, zero tensors and additions, then a reduction) whether or not anything wants
//! them. Here it is one pass each way; the scale's and shift's gradients are computed only
//! when they take part in the gradient graph (the weight-gradients method).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};

struct Affine;
/// `gy·s[c]`: the input gradient, operands (gy, s).
struct ScaleGrad;

fn check(x: &Layout, s: &Layout) -> candle_core::Result<(usize, usize)> {
    let (_, c, h, w) = x.shape().dims4()?;
    if s.shape().elem_count() != c {
        candle_core::bail!("per-channel affine: {:?} does not fit {:?}", s.shape(), x.shape())
    }
    Ok((c, h * w))
}

/// `x·s[c] (+ t[c])`, in that order, so the bits are those of candle's two ops.
fn run<T: WithDType>(x: &[T], s: &[T], t: Option<&[T]>, c: usize, hw: usize) -> Vec<T> {
    let mut y = x.to_vec();
    super::simd(&mut y, |y| {
        for (plane, i) in y.chunks_mut(hw.max(1)).zip((0..c).cycle()) {
            let si = s[i];
            match t {
                Some(t) => {
                    let ti = t[i];
                    plane.iter_mut().for_each(|v| *v = *v * si + ti);
                }
                None => plane.iter_mut().for_each(|v| *v *= si),
            }
        }
    });
    y
}

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "cnnscope-channel-affine"
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
        let (c, hw) = check(l1, l2)?;
        check(l1, l3)?;
        let out = dispatch!("per-channel affine", (s1, l1), (s2, l2), (s3, l3), |x, s, t| {
            run(x, s, Some(t), c, hw)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        s: &Tensor,
        t: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let gx = gy.apply_op2_no_bwd(s, &ScaleGrad)?;
        let gs = if s.track_op() {
            Some((&gy * x)?.sum((0, 2, 3))?.reshape(s.shape())?)
        } else {
            None
        };
        let gt = super::bias::bias_grad(&gy, t)?;
        Ok((Some(gx), gs, gt))
    }
}

impl CustomOp2 for ScaleGrad {
    fn name(&self) -> &'static str {
        "cnnscope-channel-scale"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (c, hw) = check(l1, l2)?;
        let out = dispatch!("per-channel affine backward", (s1, l1), (s2, l2), |g, s| {
            run(g, s, None, c, hw)
        });
        Ok((out, l1.shape().clone()))
    }
}

/// `x·s[c] + t[c]` for `x` `(N, C, H, W)` and `s`, `t` with `C` elements each.
pub fn channel_affine(x: &Tensor, s: &Tensor, t: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&s.contiguous()?, &t.contiguous()?, Affine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_diff;
    use candle_core::{Device, Var};

    /// Against candle's broadcast multiplication and addition: the same forward bits in f32,
    /// and all three gradients.
    #[test]
    fn matches_broadcast_ops() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 5, 7), &dev).unwrap()).unwrap();
        let s = Var::from_tensor(&Tensor::randn(0f32, 1.0, 3, &dev).unwrap()).unwrap();
        let t = Var::from_tensor(&Tensor::randn(0f32, 1.0, 3, &dev).unwrap()).unwrap();
        let ours = channel_affine(&x, &s, &t).unwrap();
        let theirs = x
            .broadcast_mul(&s.reshape((1, 3, 1, 1)).unwrap())
            .unwrap()
            .broadcast_add(&t.reshape((1, 3, 1, 1)).unwrap())
            .unwrap();
        assert_eq!(max_diff(&ours, &theirs), 0.0);
        let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [x.as_tensor(), s.as_tensor(), t.as_tensor()] {
            assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-5);
        }
    }

    #[test]
    fn constants_get_no_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 2, 3, 3), &dev).unwrap()).unwrap();
        let (s, t) = (
            Tensor::ones(2, candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap(),
        );
        let g = channel_affine(&x, &s, &t)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&s).is_none() && g.get(&t).is_none());
    }
}
