//! A fully connected layer, `y = x·Wᵀ + b` for `x` `(N, in)`, `W` `(out, in)`, as one op.
//! candle's matmul backward always computes both operands' gradients: for VGG's first
//! classifier layer that is a 25088 × 4096 weight gradient (400 MB, then a zero tensor as
//! large and an addition) on every backward pass, wanted or not. Here the weight's and
//! bias's gradients are computed only when they take part in the gradient graph.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};

use super::pointwise::matmul;

struct Linear;
/// `gy·W`: the input gradient, operands (gy, W).
struct GradInput;
/// `gyᵀ·x`: the weight gradient, operands (gy, x).
struct GradWeight;

fn dims(x: &Shape, w: &Shape) -> candle_core::Result<(usize, usize, usize)> {
    let (n, i) = x.dims2()?;
    let (o, wi) = w.dims2()?;
    if wi != i {
        candle_core::bail!("linear: weight {w:?} does not fit input {x:?}")
    }
    Ok((n, i, o))
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "cnnscope-linear"
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
        let (n, i, o) = dims(l1.shape(), l2.shape())?;
        if l3.shape().elem_count() != o {
            candle_core::bail!("linear: bias {:?} does not fit {o} outputs", l3.shape())
        }
        fn run<T: WithDType>(x: &[T], w: &[T], b: &[T], (n, i, o): (usize, usize, usize)) -> Vec<T> {
            // Start from the bias in every row, then add x·Wᵀ (Wᵀ: row stride 1, column stride in).
            let mut y: Vec<T> = (0..n).flat_map(|_| b.iter().copied()).collect();
            if n > 0 && i > 0 && o > 0 {
                matmul((n, o, i), &mut y, x, (i, 1), w, (1, i), true);
            }
            y
        }
        let out = dispatch!("linear", (s1, l1), (s2, l2), (s3, l3), |x, w, b| run(
            x,
            w,
            b,
            (n, i, o)
        ));
        Ok((out, Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let gx = gy.apply_op2_no_bwd(w, &GradInput)?;
        let gw = if w.track_op() {
            Some(gy.apply_op2_no_bwd(x, &GradWeight)?)
        } else {
            None
        };
        let gb = if b.track_op() { Some(gy.sum(0)?) } else { None };
        Ok((Some(gx), gw, gb))
    }
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "cnnscope-linear-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, o) = l1.shape().dims2()?;
        let (wo, i) = l2.shape().dims2()?;
        if wo != o {
            candle_core::bail!(
                "linear backward: gradient {:?} does not fit weight {:?}",
                l1.shape(),
                l2.shape()
            )
        }
        fn run<T: WithDType>(gy: &[T], w: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
            let mut gx = vec![T::zero(); n * i];
            if n > 0 && i > 0 && o > 0 {
                matmul((n, i, o), &mut gx, gy, (o, 1), w, (i, 1), false);
            }
            gx
        }
        let out = dispatch!("linear", (s1, l1), (s2, l2), |gy, w| run(gy, w, n, i, o));
        Ok((out, Shape::from((n, i))))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "cnnscope-linear-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, o) = l1.shape().dims2()?;
        let (_, i) = l2.shape().dims2()?;
        fn run<T: WithDType>(gy: &[T], x: &[T], n: usize, i: usize, o: usize) -> Vec<T> {
            let mut gw = vec![T::zero(); o * i];
            if n > 0 && i > 0 && o > 0 {
                // gyᵀ: row stride 1, column stride o.
                matmul((o, i, n), &mut gw, gy, (1, o), x, (i, 1), false);
            }
            gw
        }
        let out = dispatch!("linear", (s1, l1), (s2, l2), |gy, x| run(gy, x, n, i, o));
        Ok((out, Shape::from((o, i))))
    }
}

/// `x·Wᵀ + b` for `x` `(N, in)`, `W` `(out, in)`, `b` `(out)`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, Linear)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_diff;
    use candle_core::{Device, Var};

    /// Against candle's matmul and broadcast addition, forward and all three gradients.
    #[test]
    fn matches_candle() {
        let dev = Device::Cpu;
        for &(n, i, o) in &[(1, 7, 3), (4, 1, 5), (3, 33, 17)] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (n, i), &dev).unwrap()).unwrap();
            let w = Var::from_tensor(&Tensor::randn(0f64, 1.0, (o, i), &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, o, &dev).unwrap()).unwrap();
            let ours = linear(&x, &w, &b).unwrap();
            let theirs = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12);
            let probe = Tensor::randn(0f64, 1.0, (n, o), &dev).unwrap();
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), w.as_tensor(), b.as_tensor()] {
                assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-10);
            }
        }
    }

    #[test]
    fn no_weight_gradient_for_constant_weights() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 5), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (3, 5), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 3, &dev).unwrap();
        let g = linear(&x, &w, &b).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(&w).is_none() && g.get(&b).is_none());
        assert!(g.get(x.as_tensor()).is_some());
    }
}
