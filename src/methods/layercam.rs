//! LayerCAM (Jiang et al. 2021, "LayerCAM: Exploring hierarchical class activation maps
//! for localization"): each location's activation weighted by the positive part of its own
//! gradient, summed over channels, `relu(Σ_k relu(∂S_c/∂A_k) ⊙ A_k)`. Unlike Grad-CAM's
//! one weight per channel, the weights vary over the map, which keeps detail at earlier,
//! higher-resolution layers.

use candle_core::Tensor;
use serde::Deserialize;
use serde_json::{json, Value};

use super::gradcam::{cam, cam_layer, check_cam_layer};
use super::{layer_of, Ctx, Method, ModelInfo, Output, ParamError};
use crate::error::Result;

/// `relu(Σ_k relu(g_k) ⊙ A_k)` for activations and gradients `(K, h, w)`.
pub fn map(a: &Tensor, g: &Tensor) -> Result<Tensor> {
    Ok((a * g.relu()?)?.sum(0)?.relu()?)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerCam {
    /// Default: the architecture's preset (the last conv block), as for Grad-CAM.
    pub layer: Option<String>,
}

impl Method for LayerCam {
    fn name(&self) -> &'static str {
        "layercam"
    }
    fn title(&self) -> &'static str {
        "LayerCAM"
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
        Ok(cam(map(&a, &g)?, layer))
    }
}
