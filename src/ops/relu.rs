//! ReLU, and a residual block's addition followed by ReLU, as one op each. candle's `relu`
//! backward builds a zero tensor, a comparison, a conversion and a product (and its `ge`
//! passes the gradient at exactly 0, where PyTorch's does not); guided backpropagation
//! added an identity op of its own after it. Here each is one pass forward and one backward,
//! guided or not, and the gradient passes where the output is positive, as in PyTorch.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};

use super::bias::{apply_act, Act};

struct Relu(Act);

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "cnnscope-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: WithDType>(x: &[T], act: Act) -> Vec<T> {
            let mut y = x.to_vec();
            apply_act(&mut y, act);
            y
        }
        let out = dispatch!("relu", (s, l), |x| run(x, self.0));
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, gy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(super::bias::act_grad(gy, res, self.0)?))
    }
}

/// `max(x, 0)`; under guided backpropagation only positive gradients pass back as well.
pub fn relu(x: &Tensor, guided: bool) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Relu(Act::relu(guided)))
}

/// `max(a + b, 0)`, the end of a residual block.
struct AddRelu(Act);

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "cnnscope-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("add-relu: {:?} and {:?} differ", l1.shape(), l2.shape())
        }
        fn run<T: WithDType>(a: &[T], b: &[T], act: Act) -> Vec<T> {
            let mut y: Vec<T> = super::simd_with(|| a.iter().zip(b).map(|(&u, &v)| u + v).collect());
            apply_act(&mut y, act);
            y
        }
        let out = dispatch!("add-relu", (s1, l1), (s2, l2), |a, b| run(a, b, self.0));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Both operands get the same gradient: one buffer, shared.
        let g = super::bias::act_grad(gy, res, self.0)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `max(a + b, 0)` for two tensors of one shape, guided like [`relu`].
pub fn add_relu(a: &Tensor, b: &Tensor, guided: bool) -> candle_core::Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu(Act::relu(guided)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_diff;
    use candle_core::{Device, Var};

    /// Against candle's ops (and the guided identity op), forward and gradients; values are
    /// drawn away from 0, where candle's `ge` and PyTorch's rule differ.
    #[test]
    fn match_the_separate_ops() {
        let dev = Device::Cpu;
        let away = |t: Tensor| {
            let s = t.ge(0.0).unwrap().to_dtype(candle_core::DType::F64).unwrap();
            ((t + ((s * 0.2).unwrap() - 0.1).unwrap()).unwrap())
                .contiguous()
                .unwrap()
        };
        let a = Var::from_tensor(&away(Tensor::randn(0f64, 1.0, (2, 3, 5, 7), &dev).unwrap())).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f64, 0.05, (2, 3, 5, 7), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f64, 1.0, (2, 3, 5, 7), &dev).unwrap();
        for guided in [false, true] {
            let reference = |t: &Tensor| {
                let y = t.relu().unwrap();
                if guided {
                    crate::ops::guided(&y).unwrap()
                } else {
                    y
                }
            };
            let ours = relu(&a, guided).unwrap();
            let theirs = reference(&a);
            assert_eq!(max_diff(&ours, &theirs), 0.0);
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(
                max_diff(g1.get(&a).unwrap(), g2.get(&a).unwrap()),
                0.0,
                "guided {guided}"
            );

            let ours = add_relu(&a, &b, guided).unwrap();
            let theirs = reference(&(a.as_tensor() + b.as_tensor()).unwrap());
            assert!(max_diff(&ours, &theirs) < 1e-15);
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [a.as_tensor(), b.as_tensor()] {
                assert_eq!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()), 0.0, "guided {guided}");
            }
        }
    }

    /// At exactly 0 the gradient stops, as PyTorch's `threshold_backward`.
    #[test]
    fn no_gradient_at_zero() {
        let x = Var::from_tensor(&Tensor::new(&[-1.0f32, 0.0, 2.0], &Device::Cpu).unwrap()).unwrap();
        let g = relu(&x, false).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec1::<f32>().unwrap(), vec![0.0, 0.0, 1.0]);
    }
}
