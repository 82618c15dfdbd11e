//! Grad-CAM++ (Chattopadhyay et al. 2018), in the closed form of the paper's eq. 19 with
//! raw score gradients `g = ∂S_c/∂A` (as pytorch-grad-cam computes it):
//! `α_kij = g² / (2g² + Σ_ab A_kab · g³)` (0 where g = 0),
//! `w_k = Σ_ij α_kij · relu(g_kij)`, map `relu(Σ_k w_k A_k)`.

use super::gradcam::{weighted_map, Cam, CamRule};
use crate::error::Result;
use candle_core::{Device, Tensor};

/// The Grad-CAM++ channel weights for activations and gradients `(K, h, w)`.
pub fn weights(a: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (k, h, w) = a.dims3()?;
    let av = a.flatten_all()?.to_vec1::<f32>()?;
    let gv = g.flatten_all()?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(k);
    for c in 0..k {
        let s = c * h * w..(c + 1) * h * w;
        let sum_a: f64 = av[s.clone()].iter().map(|&v| v as f64).sum();
        let mut wk = 0f64;
        for &gi in &gv[s] {
            let gi = gi as f64;
            if gi == 0.0 {
                continue;
            }
            let g2 = gi * gi;
            let alpha = g2 / (2.0 * g2 + sum_a * g2 * gi + 1e-6);
            wk += alpha * gi.max(0.0);
        }
        out.push(wk as f32);
    }
    Ok(Tensor::from_vec(out, k, &Device::Cpu)?)
}

/// Grad-CAM++'s rule: each map weighted by [`weights`].
#[derive(Debug, Clone, Default)]
pub struct GradCamPlusPlusRule;

impl CamRule for GradCamPlusPlusRule {
    const NAME: &'static str = "gradcam++";
    const TITLE: &'static str = "Grad-CAM++";
    const DEFINITION: &'static str =
        "Grad-CAM with each map's weight a weighted average of its positive gradients, the weights from higher-order terms of the score: meant to cover several instances of a class better (Chattopadhay et al. 2018).";
    fn map(a: &Tensor, g: &Tensor) -> Result<Tensor> {
        weighted_map(a, &weights(a, g)?)
    }
}

pub type GradCamPlusPlus = Cam<GradCamPlusPlusRule>;
