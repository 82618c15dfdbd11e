//! SmoothGrad (Smilkov et al. 2017): the mean of the input gradients at `samples` noisy
//! copies `x + ε`, `ε ~ N(0, σ²)`, `σ = noise · (max x − min x)`. The copies run as batches (of up to 32, fewer for large inputs);
//! the noise comes from a seeded generator (one stream per batch), so a build is reproducible.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{input_map, Ctx, Method, ModelInfo, Output, ParamError, View};
use crate::error::{Error, Result};
use crate::models::{gradients, Select};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmoothGrad {
    /// Noisy copies averaged.
    pub samples: usize,
    /// Standard deviation of the noise, as a fraction of the input's max − min.
    pub noise: f64,
    pub seed: u64,
}

impl Default for SmoothGrad {
    fn default() -> Self {
        SmoothGrad {
            samples: 25,
            noise: 0.15,
            seed: 0,
        }
    }
}

impl Method for SmoothGrad {
    fn name(&self) -> &'static str {
        "smoothgrad"
    }
    fn title(&self) -> &'static str {
        "SmoothGrad"
    }
    fn definition(&self) -> &'static str {
        "The saliency map averaged over copies of the input with Gaussian noise added (σ = 0.15 × the input's range by default), which averages away much of the gradient's pixel-to-pixel noise (Smilkov et al. 2017)."
    }
    fn params(&self, _: &ModelInfo) -> Value {
        json!({"samples": self.samples, "noise": self.noise, "seed": self.seed})
    }
    fn validate(&self, _: &ModelInfo) -> std::result::Result<(), ParamError> {
        if self.samples == 0 {
            return Err(ParamError::new("samples", "must be at least 1"));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(ParamError::new(
                "noise",
                format!("must be a non-negative number, not {}", self.noise),
            ));
        }
        Ok(())
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        run(cx, self.samples, self.noise as f32, self.seed)
    }
}

fn run(cx: &Ctx, samples: usize, noise: f32, seed: u64) -> Result<Output> {
    let x = cx.x;
    let (lo, hi) = (x.min_all()?.to_scalar::<f32>()?, x.max_all()?.to_scalar::<f32>()?);
    let sigma = noise * (hi - lo);
    let normal = Normal::new(0f32, sigma.max(0.0)).map_err(|e| Error::msg(format!("smoothgrad noise: {e}")))?;
    let dims = x.dims().to_vec();
    let per = x.elem_count();
    let starts: Vec<usize> = (0..samples).step_by(cx.batch()).collect();
    // Batches run in parallel (idle cores take them from other images' work); their sums
    // are added in order. Batch `b` draws its noise from stream `b` of the seeded generator,
    // so the result does not depend on the scheduling.
    let parts = starts
        .par_iter()
        .enumerate()
        .map(|(b, &start)| -> Result<Tensor> {
            let n = cx.batch().min(samples - start);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(b as u64);
            let eps: Vec<f32> = (0..n * per)
                .map(|_| if sigma > 0.0 { normal.sample(&mut rng) } else { 0.0 })
                .collect();
            let e = Tensor::from_vec(eps, (n, dims[1], dims[2], dims[3]), &Device::Cpu)?;
            let batch = e.broadcast_add(x)?;
            super::count_pass();
            let g = gradients(cx.model.model.as_ref(), &batch, &vec![cx.target; n], Select::None)?;
            Ok(g.input.sum(0)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sum = x.squeeze(0)?.zeros_like()?;
    for part in parts {
        sum = (sum + part)?;
    }
    Ok(input_map((sum / samples as f64)?, View::Unsigned))
}
