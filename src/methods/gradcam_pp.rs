//! Grad-CAM++ (Chattopadhyay et al. 2018), in the closed form of the paper's eq. 19 with
//! raw score gradients `g = ∂S_c/∂A` (as pytorch-grad-cam computes it):
//! `α_kij = g² / (2g² + Σ_ab A_kab · g³)` (0 where g = 0),
//! `w_k = Σ_ij α_kij · relu(g_kij)`, map `relu(Σ_k w_k A_k)`.

use candle_core::{Device, Tensor};
use serde::Deserialize;
use serde_json::{json, Value};

use super::gradcam::{cam, cam_layer, check_cam_layer, weighted_map};
use super::{layer_of, Ctx, Method, ModelInfo, Output, ParamError};
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradCamPlusPlus {
    /// Default: the architecture's preset (the last conv block).
    pub layer: Option<String>,
}

impl Method for GradCamPlusPlus {
    fn name(&self) -> &'static str {
        "gradcam++"
    }
    fn title(&self) -> &'static str {
        "Grad-CAM++"
    }
    fn params(&self, model: &ModelInfo) -> Value {
        json!({"layer": cam_layer(&self.layer, model)})
    }
    fn validate(&self, model: &ModelInfo) -> std::result::Result<(), ParamError> {
        check_cam_layer(&self.layer, model)
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        let layer = cam_layer(&self.layer, &cx.info());
        let (a, g) = layer_of(cx.shared()?, layer)?;
        Ok(cam(weighted_map(&a, &weights(&a, &g)?)?, layer))
    }
}
