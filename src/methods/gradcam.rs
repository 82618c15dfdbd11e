//! Grad-CAM (Selvaraju et al. 2017): at a layer with maps `A_k`, weights
//! `w_k = mean_ij ∂S_c/∂A_k[i,j]` and the map `relu(Σ_k w_k A_k)` at the layer's resolution.
//! Also the layer parameter every CAM method shares.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{layer_of, Ctx, Map, Method, ModelInfo, Output, ParamError, View};
use crate::error::Result;

/// `relu(Σ_k w_k A_k)` for activations `A` `(K, h, w)` and weights `(K)`.
pub fn weighted_map(a: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let k = weights.dim(0)?;
    Ok(a.broadcast_mul(&weights.reshape((k, 1, 1))?)?.sum(0)?.relu()?)
}

/// The layer a CAM method reads: `layer:` if given, else the architecture's preset.
pub fn cam_layer<'a>(layer: &'a Option<String>, model: &ModelInfo) -> &'a str {
    layer.as_deref().unwrap_or(model.arch.gradcam_layer)
}

/// Checks that a CAM method's layer exists and has spatial maps.
pub fn check_cam_layer(layer: &Option<String>, model: &ModelInfo) -> std::result::Result<(), ParamError> {
    let name = cam_layer(layer, model);
    match model.layers.iter().find(|l| l.name == name) {
        None => Err(ParamError::new(
            "layer",
            format!(
                "`{name}` is not a layer of {} (layers: {})",
                model.arch.id,
                model
                    .layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Some(l) if l.output_shape.len() != 3 => Err(ParamError::new(
            "layer",
            format!(
                "`{name}` has no spatial maps (output {:?}): a class activation map needs a C×H×W layer",
                l.output_shape
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// A CAM at `layer`, drawn over the input.
pub fn cam(data: Tensor, layer: &str) -> Output {
    Output::Map(Map {
        data,
        view: View::Cam,
        layer: Some(layer.to_string()),
        metrics: BTreeMap::new(),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradCam {
    /// Default: the architecture's preset (the last conv block).
    pub layer: Option<String>,
}

impl Method for GradCam {
    fn name(&self) -> &'static str {
        "gradcam"
    }
    fn title(&self) -> &'static str {
        "Grad-CAM"
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
        let weights = g.mean((1, 2))?;
        Ok(cam(weighted_map(&a, &weights)?, layer))
    }
}
