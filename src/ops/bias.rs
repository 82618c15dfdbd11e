//! Adding a per-channel bias to `(N, C, H, W)`, with a backward that passes the gradient
//! through unchanged and sums it for the bias only when the bias takes part in the gradient
//! graph. candle's `broadcast_add` walks the broadcast index by index, and its backward
//! always reduces the gradient for the bias.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};

use super::contiguous_slice as slice;

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "cnnscope-add-channel-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = l1.shape().dims4()?;
        if l2.shape().elem_count() != c {
            candle_core::bail!("bias {:?} does not fit {:?}", l2.shape(), l1.shape())
        }
        fn run<T: WithDType>(x: &[T], b: &[T], c: usize, hw: usize) -> Vec<T> {
            let mut y = x.to_vec();
            for (plane, i) in y.chunks_mut(hw).zip((0..c).cycle()) {
                let bi = b[i];
                plane.iter_mut().for_each(|v| *v += bi);
            }
            y
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(b)) => CpuStorage::F32(run(slice(x, l1)?, slice(b, l2)?, c, h * w)),
            (CpuStorage::F64(x), CpuStorage::F64(b)) => CpuStorage::F64(run(slice(x, l1)?, slice(b, l2)?, c, h * w)),
            _ => candle_core::bail!("bias add: f32 or f64 operands of one dtype"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, b: &Tensor, _res: &Tensor, gy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gb = if b.track_op() {
            Some(gy.sum((0, 2, 3))?.reshape(b.shape())?)
        } else {
            None
        };
        Ok((Some(gy.clone()), gb))
    }
}

/// `x + b[c]` for `x` of shape `(N, C, H, W)` and `b` with `C` elements.
pub fn add_channel_bias(x: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&b.contiguous()?, AddBias)
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
        let ours = add_channel_bias(&x, &b).unwrap();
        let theirs = x.broadcast_add(&b.reshape((1, 3, 1, 1)).unwrap()).unwrap();
        let d = (&ours - &theirs).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(d < 1e-12);
        let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [x.as_tensor(), b.as_tensor()] {
            let d = (g1.get(v).unwrap() - g2.get(v).unwrap()).unwrap().abs().unwrap().sum_all().unwrap();
            assert!(d.to_scalar::<f64>().unwrap() < 1e-10);
        }
    }
}
