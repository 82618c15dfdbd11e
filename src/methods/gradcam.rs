//! Grad-CAM (Selvaraju et al. 2017): at a layer with maps `A_k`, weights
//! `w_k = mean_ij ∂S_c/∂A_k[i,j]` and the map `relu(Σ_k w_k A_k)` at the layer's resolution.
//! Also what every CAM method shares: [`Cam`], its `layer` parameter and [`CamRule`].

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{layer_of, Ctx, Map, Method, ModelInfo, Output, ParamError, Placement, View};
use crate::error::Result;

/// `relu(Σ_k w_k A_k)` for activations `A` `(K, h, w)` and weights `(K)`.
pub fn weighted_map(a: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let k = weights.dim(0)?;
    Ok(a.broadcast_mul(&weights.reshape((k, 1, 1))?)?.sum(0)?.relu()?)
}

/// The layer a CAM method reads: `layer:` if given, else the architecture's preset.
fn cam_layer<'a>(layer: &'a Option<String>, model: &ModelInfo) -> &'a str {
    layer.as_deref().unwrap_or(model.arch.gradcam_layer)
}

/// Checks that a CAM method's layer exists and has spatial maps.
fn check_cam_layer(layer: &Option<String>, model: &ModelInfo) -> std::result::Result<(), ParamError> {
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

/// A CAM at `layer`, drawn over the input with its cells at `placement`.
fn cam(data: Tensor, layer: &str, placement: Placement) -> Output {
    Output::Map(Map {
        data,
        view: View::Cam,
        layer: Some(layer.to_string()),
        placement,
        metrics: BTreeMap::new(),
    })
}

/// How a CAM is laid over the input (`placement:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaceBy {
    /// Each cell at the centre of its receptive field, where the layer's geometry is known
    /// (else stretched).
    #[default]
    Field,
    /// Stretched over the whole input, as pytorch-grad-cam resizes.
    Stretch,
}

/// The placement a CAM at `layer` gets: by its receptive fields when asked for and known.
fn placement_of(by: PlaceBy, layer: &str, model: &ModelInfo) -> Placement {
    let field = model.layers.iter().find(|l| l.name == layer).and_then(|l| l.field);
    match (by, field) {
        (PlaceBy::Field, Some(f)) => Placement::of_field(&f),
        _ => Placement::Stretch,
    }
}

/// What distinguishes one CAM method from another: how a layer's activations `A` and the
/// score's gradients `g` there, both `(K, h, w)`, become one `h × w` map. Everything else —
/// the `layer` parameter with the architecture's preset, its validation, the shared pass —
/// is [`Cam`]'s.
pub trait CamRule: std::fmt::Debug + Clone + Default + Send + Sync + 'static {
    const NAME: &'static str;
    const TITLE: &'static str;
    /// What the method computes, in a sentence or two (the method page's opening).
    const DEFINITION: &'static str;
    fn map(a: &Tensor, g: &Tensor) -> Result<Tensor>;
}

/// A class activation map method at one layer (default: the architecture's preset).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct Cam<R: CamRule> {
    pub layer: Option<String>,
    #[serde(default)]
    pub placement: PlaceBy,
    #[serde(skip)]
    rule: std::marker::PhantomData<R>,
}

impl<R: CamRule> Cam<R> {
    /// The method at `layer` (`None`: the architecture's preset).
    pub fn at(layer: Option<&str>) -> Self {
        Cam {
            layer: layer.map(str::to_string),
            placement: PlaceBy::Field,
            rule: std::marker::PhantomData,
        }
    }
}

impl<R: CamRule> Method for Cam<R> {
    fn name(&self) -> &'static str {
        R::NAME
    }
    fn title(&self) -> &'static str {
        R::TITLE
    }
    fn definition(&self) -> &'static str {
        R::DEFINITION
    }
    fn params(&self, model: &ModelInfo) -> Value {
        let layer = cam_layer(&self.layer, model);
        let placement = match placement_of(self.placement, layer, model) {
            Placement::Stretch => "stretch",
            Placement::Field { .. } => "field",
        };
        json!({"layer": layer, "placement": placement})
    }
    fn validate(&self, model: &ModelInfo) -> std::result::Result<(), ParamError> {
        check_cam_layer(&self.layer, model)
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        let info = cx.info();
        let layer = cam_layer(&self.layer, &info);
        let (a, g) = layer_of(cx.shared()?, layer)?;
        Ok(cam(R::map(&a, &g)?, layer, placement_of(self.placement, layer, &info)))
    }
}

/// Grad-CAM's rule: each map weighted by its mean gradient.
#[derive(Debug, Clone, Default)]
pub struct GradCamRule;

impl CamRule for GradCamRule {
    const NAME: &'static str = "gradcam";
    const TITLE: &'static str = "Grad-CAM";
    const DEFINITION: &'static str =
        "The layer's feature maps, each weighted by the spatial mean of the class score's gradient on it, summed and passed through a ReLU: a coarse map, at the layer's resolution, of where the evidence for the class lies (Selvaraju et al. 2017).";
    fn map(a: &Tensor, g: &Tensor) -> Result<Tensor> {
        weighted_map(a, &g.mean((1, 2))?)
    }
}

pub type GradCam = Cam<GradCamRule>;
