//! HiResCAM (Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM for faithful
//! explanations of convolutional neural networks"): the element-wise product of the
//! gradient and the activation, summed over channels, `relu(Σ_k ∂S_c/∂A_k ⊙ A_k)`.
//! Grad-CAM averages each channel's gradient first; HiResCAM keeps where inside a map the
//! gradient is large, so for models ending in global average pooling and one linear layer
//! it is exactly the score's share per location.

use candle_core::Tensor;
use serde::Deserialize;
use serde_json::{json, Value};

use super::gradcam::{cam, cam_layer, check_cam_layer};
use super::{layer_of, Ctx, Method, ModelInfo, Output, ParamError};
use crate::error::Result;

/// `relu(Σ_k g_k ⊙ A_k)` for activations and gradients `(K, h, w)`.
pub fn map(a: &Tensor, g: &Tensor) -> Result<Tensor> {
    Ok((a * g)?.sum(0)?.relu()?)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiResCam {
    /// Default: the architecture's preset (the last conv block), as for Grad-CAM.
    pub layer: Option<String>,
}

impl Method for HiResCam {
    fn name(&self) -> &'static str {
        "hirescam"
    }
    fn title(&self) -> &'static str {
        "HiResCAM"
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
