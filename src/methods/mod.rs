//! Attribution methods: what in the input, or in a layer, made the model give a class its
//! score. Each method is one file; this module holds their configuration (as written in
//! `gallery.yaml`), the context they run in, and what they return.
//!
//! Adding a method = one file plus one variant in [`MethodSpec`] (its name and parameters)
//! and one arm in [`MethodSpec::run`].

pub mod activation_gradients;
pub mod gradcam;
pub mod gradcam_pp;
pub mod gradient_x_input;
pub mod guided_backprop;
pub mod integrated_gradients;
pub mod occlusion;
pub mod saliency;
pub mod smoothgrad;
pub mod weight_gradients;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Input;
use crate::error::Result;
use crate::models::{self, Architecture, Gradients, LayerInfo, LoadedModel, Select};

thread_local! {
    static PASSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Forward + backward passes run by methods on this thread so far (to check sharing).
pub fn passes_on_this_thread() -> usize {
    PASSES.with(|p| p.get())
}

pub(crate) fn count_pass() {
    PASSES.with(|p| p.set(p.get() + 1));
}

/// Most inputs per batch for the methods that evaluate many (SmoothGrad, IG, occlusion).
pub const MAX_BATCH: usize = 32;
/// Input numbers per batch: bounds the memory of a batch's activations (3 images at 224×224×3;
/// measured on EfficientNet-Lite0, 3 was faster than 6 or 1 and kept the peak RSS near 2 GB).
const BATCH_ELEMENTS: usize = 1 << 19;

fn d_samples() -> usize {
    25
}
fn d_noise() -> f64 {
    0.15
}
fn d_steps() -> usize {
    50
}

/// The reference input of Integrated Gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// All zeros in the model's (normalised) input space: the mean image.
    #[default]
    Zeros,
    /// Black pixels: `(0 − mean)/std` per channel.
    Black,
    /// The input blurred with a Gaussian of σ = min(height, width)/20 pixels.
    Blur,
}

/// A method and its parameters, as listed under `methods:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "name", deny_unknown_fields)]
pub enum MethodSpec {
    #[serde(rename = "saliency")]
    Saliency {},
    #[serde(rename = "gradient-x-input")]
    GradientXInput {},
    #[serde(rename = "smoothgrad")]
    SmoothGrad {
        #[serde(default = "d_samples")]
        samples: usize,
        /// Standard deviation of the noise, as a fraction of the input's max − min.
        #[serde(default = "d_noise")]
        noise: f64,
        #[serde(default)]
        seed: u64,
    },
    #[serde(rename = "integrated-gradients")]
    IntegratedGradients {
        #[serde(default = "d_steps")]
        steps: usize,
        #[serde(default)]
        baseline: Baseline,
    },
    #[serde(rename = "guided-backprop")]
    GuidedBackprop {},
    #[serde(rename = "gradcam")]
    GradCam { layer: Option<String> },
    #[serde(rename = "gradcam++")]
    GradCamPlusPlus { layer: Option<String> },
    #[serde(rename = "occlusion")]
    Occlusion {
        /// Side of the square window, in input pixels (default: 1/7 of the smaller side).
        window: Option<usize>,
        /// Step between windows (default: half the window).
        stride: Option<usize>,
        /// The value the window is filled with, in the model's normalised input space.
        #[serde(default)]
        baseline: f64,
    },
    #[serde(rename = "activation-gradients")]
    ActivationGradients {},
    #[serde(rename = "weight-gradients")]
    WeightGradients {},
}

/// Every method with its defaults: what runs when `methods:` is absent.
pub fn all_defaults() -> Vec<MethodSpec> {
    use MethodSpec::*;
    vec![
        Saliency {},
        GradientXInput {},
        SmoothGrad {
            samples: d_samples(),
            noise: d_noise(),
            seed: 0,
        },
        IntegratedGradients {
            steps: d_steps(),
            baseline: Baseline::Zeros,
        },
        GuidedBackprop {},
        GradCam { layer: None },
        GradCamPlusPlus { layer: None },
        Occlusion {
            window: None,
            stride: None,
            baseline: 0.0,
        },
        ActivationGradients {},
        WeightGradients {},
    ]
}

/// How a map is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Input space, magnitude: max over channels of |·|, viridis.
    Unsigned,
    /// Input space, sign kept: sum over channels, blue–white–red.
    Signed,
    /// A class activation map at a layer's resolution, upsampled onto the input.
    Cam,
}

/// One attribution map, raw: `C×H×W` in input space, `h×w` for CAMs, `H×W` for occlusion.
pub struct Map {
    pub data: Tensor,
    pub view: View,
    pub layer: Option<String>,
    /// Checks that come with the map (Integrated Gradients' completeness gap).
    pub metrics: BTreeMap<String, f64>,
}

pub enum Output {
    Map(Map),
    /// A gradient per named layer (activation gradients), without the batch dimension.
    Layers(Vec<(String, Tensor)>),
    /// The gradient of the loss for class `class` with respect to every weight tensor.
    Weights {
        class: usize,
        grads: Vec<(String, Tensor)>,
    },
}

/// What a method runs on: one model, one preprocessed image `(1, C, H, W)`, one target.
pub struct Ctx<'a> {
    pub model: &'a LoadedModel,
    pub arch: &'static Architecture,
    pub input: &'a Input,
    pub x: &'a Tensor,
    pub target: usize,
    /// The class whose loss the weight gradients are taken of (the label, else the prediction).
    pub loss_class: usize,
    shared: OnceLock<Gradients>,
}

impl<'a> Ctx<'a> {
    pub fn new(
        model: &'a LoadedModel,
        arch: &'static Architecture,
        input: &'a Input,
        x: &'a Tensor,
        target: usize,
        loss_class: usize,
    ) -> Self {
        Ctx {
            model,
            arch,
            input,
            x,
            target,
            loss_class,
            shared: OnceLock::new(),
        }
    }

    /// The one forward + backward pass from the target's score with every layer probed,
    /// shared by saliency, gradient×input, Grad-CAM, Grad-CAM++ and activation gradients.
    pub fn shared(&self) -> Result<&Gradients> {
        if let Some(g) = self.shared.get() {
            return Ok(g);
        }
        count_pass();
        let g = models::gradients(self.model.model.as_ref(), self.x, &[self.target], Select::All)?;
        let _ = self.shared.set(g);
        Ok(self.shared.get().expect("just set"))
    }

    /// How many inputs one batch holds for this input size.
    pub fn batch(&self) -> usize {
        (BATCH_ELEMENTS / self.x.elem_count().max(1)).clamp(1, MAX_BATCH)
    }

    /// Whether the shared pass has run (for tests of sharing).
    pub fn shared_ran(&self) -> bool {
        self.shared.get().is_some()
    }
}

impl MethodSpec {
    pub fn id(&self) -> &'static str {
        match self {
            MethodSpec::Saliency {} => "saliency",
            MethodSpec::GradientXInput {} => "gradient-x-input",
            MethodSpec::SmoothGrad { .. } => "smoothgrad",
            MethodSpec::IntegratedGradients { .. } => "integrated-gradients",
            MethodSpec::GuidedBackprop {} => "guided-backprop",
            MethodSpec::GradCam { .. } => "gradcam",
            MethodSpec::GradCamPlusPlus { .. } => "gradcam++",
            MethodSpec::Occlusion { .. } => "occlusion",
            MethodSpec::ActivationGradients {} => "activation-gradients",
            MethodSpec::WeightGradients {} => "weight-gradients",
        }
    }

    /// A human title for pages.
    pub fn title(&self) -> &'static str {
        match self {
            MethodSpec::Saliency {} => "Saliency",
            MethodSpec::GradientXInput {} => "Gradient × input",
            MethodSpec::SmoothGrad { .. } => "SmoothGrad",
            MethodSpec::IntegratedGradients { .. } => "Integrated Gradients",
            MethodSpec::GuidedBackprop {} => "Guided backprop",
            MethodSpec::GradCam { .. } => "Grad-CAM",
            MethodSpec::GradCamPlusPlus { .. } => "Grad-CAM++",
            MethodSpec::Occlusion { .. } => "Occlusion",
            MethodSpec::ActivationGradients {} => "Activation gradients",
            MethodSpec::WeightGradients {} => "Weight gradients",
        }
    }

    /// Whether the method draws one map per target (false: layer-wise gradients).
    pub fn is_map(&self) -> bool {
        !matches!(
            self,
            MethodSpec::ActivationGradients {} | MethodSpec::WeightGradients {}
        )
    }

    /// Whether the result depends on the target (weight gradients use the loss instead).
    pub fn per_target(&self) -> bool {
        !matches!(self, MethodSpec::WeightGradients {})
    }

    /// Occlusion's window and stride for an input, with the defaults filled in.
    pub fn occlusion_geometry(window: Option<usize>, stride: Option<usize>, input: &Input) -> (usize, usize) {
        let side = input.height.min(input.width);
        let w = window.unwrap_or(((side as f64 / 7.0).round() as usize).max(1));
        (w, stride.unwrap_or((w / 2).max(1)))
    }

    /// The parameters as they apply to a model (defaults and presets filled in).
    pub fn params(&self, arch: &Architecture, input: &Input) -> Value {
        match self {
            MethodSpec::SmoothGrad { samples, noise, seed } => {
                json!({"samples": samples, "noise": noise, "seed": seed})
            }
            MethodSpec::IntegratedGradients { steps, baseline } => {
                json!({"steps": steps, "baseline": baseline, "rule": "trapezoid"})
            }
            MethodSpec::GradCam { layer } | MethodSpec::GradCamPlusPlus { layer } => {
                json!({"layer": layer.as_deref().unwrap_or(arch.gradcam_layer)})
            }
            MethodSpec::Occlusion {
                window,
                stride,
                baseline,
            } => {
                let (w, s) = Self::occlusion_geometry(*window, *stride, input);
                json!({"window": w, "stride": s, "baseline": baseline})
            }
            _ => json!({}),
        }
    }

    /// Checks the parameters against a model; on failure returns (parameter, message).
    pub fn validate(
        &self,
        arch: &Architecture,
        input: &Input,
        layers: &[LayerInfo],
    ) -> std::result::Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        match self {
            MethodSpec::SmoothGrad { samples, noise, .. } => {
                if *samples == 0 {
                    return err("samples", "must be at least 1".into());
                }
                if !(noise.is_finite() && *noise >= 0.0) {
                    return err("noise", format!("must be a non-negative number, not {noise}"));
                }
            }
            MethodSpec::IntegratedGradients { steps, .. } if *steps == 0 => {
                return err("steps", "must be at least 1".into());
            }
            MethodSpec::GradCam { layer } | MethodSpec::GradCamPlusPlus { layer } => {
                let name = layer.as_deref().unwrap_or(arch.gradcam_layer);
                match layers.iter().find(|l| l.name == name) {
                    None => {
                        return err(
                            "layer",
                            format!(
                                "`{name}` is not a layer of {} (layers: {})",
                                arch.id,
                                layers.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        )
                    }
                    Some(l) if l.output_shape.len() != 3 => {
                        return err(
                            "layer",
                            format!(
                                "`{name}` has no spatial maps (output {:?}): Grad-CAM needs a C×H×W layer",
                                l.output_shape
                            ),
                        )
                    }
                    _ => {}
                }
            }
            MethodSpec::Occlusion {
                window,
                stride,
                baseline,
            } => {
                let (w, s) = Self::occlusion_geometry(*window, *stride, input);
                if w == 0 || w > input.height.min(input.width) {
                    return err(
                        "window",
                        format!(
                            "must be between 1 and {} (the input's smaller side), not {w}",
                            input.height.min(input.width)
                        ),
                    );
                }
                if s == 0 {
                    return err("stride", "must be at least 1".into());
                }
                if !baseline.is_finite() {
                    return err("baseline", "must be a finite number".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn run(&self, cx: &Ctx) -> Result<Output> {
        match self {
            MethodSpec::Saliency {} => saliency::run(cx),
            MethodSpec::GradientXInput {} => gradient_x_input::run(cx),
            MethodSpec::SmoothGrad { samples, noise, seed } => smoothgrad::run(cx, *samples, *noise as f32, *seed),
            MethodSpec::IntegratedGradients { steps, baseline } => integrated_gradients::run(cx, *steps, *baseline),
            MethodSpec::GuidedBackprop {} => guided_backprop::run(cx),
            MethodSpec::GradCam { layer } => gradcam::run(cx, layer.as_deref().unwrap_or(cx.arch.gradcam_layer)),
            MethodSpec::GradCamPlusPlus { layer } => {
                gradcam_pp::run(cx, layer.as_deref().unwrap_or(cx.arch.gradcam_layer))
            }
            MethodSpec::Occlusion {
                window,
                stride,
                baseline,
            } => {
                let (w, s) = Self::occlusion_geometry(*window, *stride, cx.input);
                occlusion::run(cx, w, s, *baseline as f32)
            }
            MethodSpec::ActivationGradients {} => activation_gradients::run(cx),
            MethodSpec::WeightGradients {} => weight_gradients::run(cx),
        }
    }
}

/// The activation and gradient of a layer from the shared pass, without the batch dimension.
pub(crate) fn layer_of<'g>(g: &'g Gradients, layer: &str) -> Result<(Tensor, Tensor)> {
    let (_, a, d) = g
        .layers
        .iter()
        .find(|(n, _, _)| n == layer)
        .ok_or_else(|| crate::Error::msg(format!("layer `{layer}` was not probed")))?;
    Ok((a.squeeze(0)?, d.squeeze(0)?))
}

pub(crate) fn input_map(data: Tensor, view: View) -> Output {
    Output::Map(Map {
        data,
        view,
        layer: None,
        metrics: BTreeMap::new(),
    })
}
