//! Guided backpropagation's rule as an op: identity going forward; going backward it lets
//! only positive gradients through. Placed after a ReLU (whose own backward already keeps
//! only positions where the input was positive), the pair passes a gradient only where
//! both the forward input and the backward gradient are positive.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

struct GuidedIdentity;

impl CustomOp1 for GuidedIdentity {
    fn name(&self) -> &'static str {
        "cnnscope-guided-identity"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("guided identity: input must be contiguous".into()))?;
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
            CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
            _ => candle_core::bail!("guided identity: only f32 and f64 are supported"),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad_res.relu()?))
    }
}

/// Identity forward, `relu(grad)` backward.
pub fn guided(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(GuidedIdentity)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    #[test]
    fn passes_values_and_only_positive_gradients() {
        let x = Var::from_tensor(&Tensor::new(&[-1.0f32, 2.0, 3.0], &Device::Cpu).unwrap()).unwrap();
        let y = super::guided(x.as_tensor()).unwrap();
        assert_eq!(y.to_vec1::<f32>().unwrap(), vec![-1.0, 2.0, 3.0]);
        let w = Tensor::new(&[5.0f32, -4.0, 6.0], &Device::Cpu).unwrap();
        let g = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(g.get(&x).unwrap().to_vec1::<f32>().unwrap(), vec![5.0, 0.0, 6.0]);
    }
}
