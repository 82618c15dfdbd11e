//! ReLU6, `min(max(x, 0), 6)`, as one op. candle's `clamp` is a maximum then a minimum
//! against broadcast scalars, and the backward of each builds about a dozen full-size
//! tensors (masks, conversions, divisions, the scalar's own gradient): on EfficientNet that
//! was a large share of a backward pass. Here the backward is one pass: the gradient passes
//! where `0 < x < 6`, as in PyTorch's `hardtanh_backward`.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};

struct Relu6;

impl CustomOp1 for Relu6 {
    fn name(&self) -> &'static str {
        "cnnscope-relu6"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        fn run<T: WithDType>(x: &[T]) -> Vec<T> {
            let (lo, hi) = (T::zero(), T::from_f64(6.0));
            let mut y = x.to_vec();
            super::simd(&mut y, |y| {
                for v in y.iter_mut() {
                    let x = *v;
                    let x = if x < lo { lo } else { x };
                    *v = if x > hi { hi } else { x };
                }
            });
            y
        }
        let out = dispatch!("relu6", (s, l), |x| run(x));
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, gy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        // From the output: 0 < y < 6 exactly where 0 < x < 6.
        Ok(Some(super::bias::act_grad(gy, res, super::bias::Act::Relu6)?))
    }
}

/// `min(max(x, 0), 6)`.
pub fn relu6(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Relu6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn values_and_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[-1.0f64, 0.0, 0.5, 5.9, 6.0, 7.0], &dev).unwrap()).unwrap();
        let y = relu6(&x).unwrap();
        assert_eq!(y.to_vec1::<f64>().unwrap(), vec![0.0, 0.0, 0.5, 5.9, 6.0, 6.0]);
        let w = Tensor::new(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &dev).unwrap();
        let g = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        // Strictly inside (0, 6) only, as PyTorch.
        assert_eq!(
            g.get(&x).unwrap().to_vec1::<f64>().unwrap(),
            vec![0.0, 0.0, 3.0, 4.0, 0.0, 0.0]
        );
    }

    /// Against candle's clamp on random values (ties at 0 and 6 have probability 0).
    #[test]
    fn matches_clamp() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 4.0, (2, 3, 5, 7), &dev).unwrap() + 3.0).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (2, 3, 5, 7), &dev).unwrap();
        let a = relu6(&x).unwrap();
        let b = x.clamp(0f32, 6f32).unwrap();
        assert_eq!(
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let ga = (a * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (b * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (ga.get(&x).unwrap(), gb.get(&x).unwrap());
        assert_eq!(
            ga.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            gb.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
