//! Attribution methods: the [`Method`] trait every method implements, the registry that
//! maps the names of `gallery.yaml` to them, and the context they run in.
//!
//! Adding a method = one file in this folder (its parameters as a `Deserialize + Default`
//! struct and an `impl Method`) plus one line in [`REGISTRY`]. Everything about a method —
//! name, title, defaults, validation, the parameters as applied, the computation — lives
//! in its file.

pub mod activation_gradients;
pub mod gradcam;
pub mod gradcam_pp;
pub mod gradient_x_input;
pub mod guided_backprop;
pub mod hirescam;
pub mod integrated_gradients;
pub mod layercam;
pub mod occlusion;
pub mod saliency;
pub mod smoothgrad;
pub mod weight_gradients;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use candle_core::Tensor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::models::{self, Architecture, Gradients, Input, LayerInfo, LoadedModel, Select};
pub use crate::render::attribution::Placement;

pub use integrated_gradients::Baseline;

/// One attribution method with its parameters, as listed under `methods:`.
pub trait Method: std::fmt::Debug + Send + Sync {
    /// The name under `methods:` (`integrated-gradients`).
    fn name(&self) -> &'static str;
    /// A human title for pages (`Integrated Gradients`).
    fn title(&self) -> &'static str;
    /// What the method computes, in a sentence or two, with its reference (the opening of
    /// its method page).
    fn definition(&self) -> &'static str;
    /// What the method produces.
    fn output(&self) -> OutputKind {
        OutputKind::Map
    }
    /// The parameters as they apply to a model, defaults and presets filled in: shown on
    /// the pages, written to the manifest, and part of the cache key.
    fn params(&self, _model: &ModelInfo) -> Value {
        Value::Object(Default::default())
    }
    /// Checks the parameters against a model; the error names the parameter.
    fn validate(&self, _model: &ModelInfo) -> std::result::Result<(), ParamError> {
        Ok(())
    }
    fn run(&self, cx: &Ctx) -> Result<Output>;
}

/// What a method returns, known before it runs (pages and cache layout depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// One map per target class, drawn over the input (a cell of the attribution matrix).
    Map,
    /// A gradient per named layer, per target class.
    Layers,
    /// The loss's gradient at every weight tensor, once per image.
    Weights,
}

/// A parameter that does not fit the model: which one, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub param: &'static str,
    pub msg: String,
}

impl ParamError {
    pub fn new(param: &'static str, msg: impl Into<String>) -> Self {
        ParamError { param, msg: msg.into() }
    }
}

/// The model a method is applied to, for its parameters and their validation.
#[derive(Clone, Copy)]
pub struct ModelInfo<'a> {
    pub arch: &'static Architecture,
    pub input: &'a Input,
    pub layers: &'a [LayerInfo],
}

/// A registry line: how to read a method's parameters and what its defaults are.
pub struct Entry {
    /// The method's parameters from a YAML mapping (without `name`).
    pub parse: fn(serde_yaml::Value) -> std::result::Result<Arc<dyn Method>, serde_yaml::Error>,
    pub default: fn() -> Arc<dyn Method>,
}

fn parse_as<M: Method + DeserializeOwned + 'static>(
    v: serde_yaml::Value,
) -> std::result::Result<Arc<dyn Method>, serde_yaml::Error> {
    Ok(Arc::new(serde_yaml::from_value::<M>(v)?))
}

fn default_of<M: Method + Default + 'static>() -> Arc<dyn Method> {
    Arc::new(M::default())
}

impl Entry {
    pub const fn of<M: Method + DeserializeOwned + Default + 'static>() -> Entry {
        Entry {
            parse: parse_as::<M>,
            default: default_of::<M>,
        }
    }

    pub fn name(&self) -> &'static str {
        (self.default)().name()
    }
}

/// Every method, in the order they run when `methods:` is absent.
pub const REGISTRY: &[Entry] = &[
    Entry::of::<saliency::Saliency>(),
    Entry::of::<gradient_x_input::GradientXInput>(),
    Entry::of::<smoothgrad::SmoothGrad>(),
    Entry::of::<integrated_gradients::IntegratedGradients>(),
    Entry::of::<guided_backprop::GuidedBackprop>(),
    Entry::of::<gradcam::GradCam>(),
    Entry::of::<gradcam_pp::GradCamPlusPlus>(),
    Entry::of::<hirescam::HiResCam>(),
    Entry::of::<layercam::LayerCam>(),
    Entry::of::<occlusion::Occlusion>(),
    Entry::of::<activation_gradients::ActivationGradients>(),
    Entry::of::<weight_gradients::WeightGradients>(),
];

/// The names of every method, for error messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(Entry::name).collect()
}

/// The method registered under `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name() == name)
}

/// A method as configured: shared, cheap to clone, compared by name and parameters.
#[derive(Clone)]
pub struct MethodSpec(pub Arc<dyn Method>);

impl std::ops::Deref for MethodSpec {
    type Target = dyn Method;
    fn deref(&self) -> &(dyn Method + 'static) {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for MethodSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<M: Method + 'static> From<M> for MethodSpec {
    fn from(m: M) -> Self {
        MethodSpec(Arc::new(m))
    }
}

impl MethodSpec {
    /// Whether the method draws one map per target (a cell of the attribution matrix).
    pub fn is_map(&self) -> bool {
        self.output() == OutputKind::Map
    }

    /// Whether the result depends on the target (weight gradients use the loss instead).
    pub fn per_target(&self) -> bool {
        self.output() != OutputKind::Weights
    }

    /// Reads one entry of `methods:`: a mapping with `name` and the method's parameters.
    /// The error names the parameter at fault when it can tell.
    pub fn parse(v: &serde_yaml::Value) -> std::result::Result<MethodSpec, ParseError> {
        let fail = |param: Option<String>, msg: String| Err(ParseError { param, msg });
        let serde_yaml::Value::Mapping(map) = v else {
            return fail(
                None,
                format!("expected a mapping with `name:` (one of {})", names().join(", ")),
            );
        };
        let mut rest = map.clone();
        let name = match rest.remove("name") {
            Some(serde_yaml::Value::String(s)) => s,
            Some(_) => return fail(Some("name".into()), "must be a method name".into()),
            None => return fail(None, format!("missing `name` (one of {})", names().join(", "))),
        };
        let Some(entry) = entry(&name) else {
            return fail(
                Some("name".into()),
                format!("unknown method `{name}` (methods: {})", names().join(", ")),
            );
        };
        let params: Vec<String> = rest.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
        (entry.parse)(serde_yaml::Value::Mapping(rest))
            .map(MethodSpec)
            .map_err(|e| {
                let msg = e.to_string();
                // serde names an unknown parameter; a bad value is at fault only when one is given.
                let param = params
                    .iter()
                    .find(|p| msg.contains(&format!("unknown field `{p}`")) || msg.starts_with(&format!("{p}:")))
                    .or((params.len() == 1).then(|| &params[0]))
                    .cloned();
                ParseError {
                    param,
                    msg: format!("{name}: {msg}"),
                }
            })
    }
}

/// A `methods:` entry that cannot be read: the parameter at fault (when known) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub param: Option<String>,
    pub msg: String,
}

/// Every method with its defaults: what runs when `methods:` is absent.
pub fn all_defaults() -> Vec<MethodSpec> {
    REGISTRY.iter().map(|e| MethodSpec((e.default)())).collect()
}

/// The folder-name form of a method's name (`gradcam++` → `gradcam-pp`).
pub fn slug(name: &str) -> String {
    name.replace("++", "-pp")
}

/// File-name-safe, unique names for the methods of a list (a method listed twice gets `-2`).
pub fn slugs(methods: &[MethodSpec]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    methods
        .iter()
        .map(|m| {
            let n = seen.entry(m.name()).or_insert(0);
            *n += 1;
            if *n == 1 {
                slug(m.name())
            } else {
                format!("{}-{n}", slug(m.name()))
            }
        })
        .collect()
}

/// The parameters as `key = value, …` (for the matrix's row headers).
pub fn params_text(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} = {}", v.to_string().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

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
    /// Where a CAM's cells sit on the input (input-space maps: unused).
    pub placement: Placement,
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
    /// shared by saliency, gradient×input, the CAMs and activation gradients.
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

    /// The model as methods see it for parameters.
    pub fn info(&self) -> ModelInfo<'_> {
        ModelInfo {
            arch: self.arch,
            input: self.input,
            layers: self.model.model.layers(),
        }
    }
}

/// The activation and gradient of a layer from the shared pass, without the batch dimension.
pub(crate) fn layer_of(g: &Gradients, layer: &str) -> Result<(Tensor, Tensor)> {
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
        placement: Placement::Stretch,
        metrics: BTreeMap::new(),
    })
}
