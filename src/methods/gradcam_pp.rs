//! Grad-CAM++ (Chattopadhyay et al. 2018), in the closed form of the paper's eq. 19 with
//! raw score gradients `g = ∂S_c/∂A` (as pytorch-grad-cam computes it):
//! `α_kij = g² / (2g² + Σ_ab A_kab · g³)` (0 where g = 0),
//! `w_k = Σ_ij α_kij · relu(g_kij)`, map `relu(Σ_k w_k A_k)`.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use super::gradcam::weighted_map;
use super::{layer_of, Ctx, Map, Output, View};
use crate::error::Result;

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

pub fn run(cx: &Ctx, layer: &str) -> Result<Output> {
    let (a, g) = layer_of(cx.shared()?, layer)?;
    Ok(Output::Map(Map {
        data: weighted_map(&a, &weights(&a, &g)?)?,
        view: View::Cam,
        layer: Some(layer.to_string()),
        metrics: BTreeMap::new(),
    }))
}
