//! Architectures and the model interface every method is written against.
//!
//! A model lists its named layers and runs a forward pass in which every named layer's
//! output goes through a [`Tap`]. The tap can keep the activation and can add a zero-valued
//! `Var` ("probe") to it: candle keeps gradients only for `Var`s, and the gradient of a
//! score with respect to the probe is exactly the gradient with respect to the activation.
//! One backward pass from a scalar score then yields the input gradient and every probed
//! layer's gradient together.
//!
//! Adding an architecture = one file in this folder plus one line in [`ARCHITECTURES`]. An
//! architecture lists its layers and tensors once, as a [`layer::Net`]; `tests/architectures.rs`
//! checks that the constructor loads exactly those tensors.

pub mod alexnet;
pub mod efficientnet_lite0;
mod input;
pub mod layer;
pub mod lenet5;
pub mod mobilenet_v2;
pub mod nn;
pub mod onnx;
pub mod plain;
pub mod region;
pub mod resnet;
pub mod vgg;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use serde::Serialize;

use crate::error::{Error, Result};
pub use input::Input;

/// What a layer is, for display and for methods that look for a kind (the last conv, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Conv,
    #[serde(rename = "batchnorm")]
    BatchNorm,
    Relu,
    Relu6,
    MaxPool,
    AvgPool,
    /// A composite block (a residual block, an MBConv block): its output.
    Block,
    Linear,
    /// Another operation of an ONNX graph (an addition, a concatenation, a sigmoid, ...).
    Op,
}

impl LayerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            LayerKind::Conv => "conv",
            LayerKind::BatchNorm => "batchnorm",
            LayerKind::Relu => "relu",
            LayerKind::Relu6 => "relu6",
            LayerKind::MaxPool => "maxpool",
            LayerKind::AvgPool => "avgpool",
            LayerKind::Block => "block",
            LayerKind::Linear => "linear",
            LayerKind::Op => "op",
        }
    }
}

/// A named point in the network whose output can be read and differentiated. Built with
/// [`LayerInfo::new`] and [`LayerInfo::owns`] ([`layer`]).
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    pub name: String,
    pub kind: LayerKind,
    /// Output shape for one input at the configured size, without the batch dimension.
    pub output_shape: Vec<usize>,
    /// Number of trainable numbers in this layer (0 for activations and pooling).
    pub parameters: usize,
    /// Name of the weight tensor, for layers that have one (`conv1.weight`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    /// The state-dict tensors this layer owns; `parameters` is their trainable size
    /// (see [`layer`]). Not part of the site's output.
    #[serde(skip)]
    pub tensors: Vec<String>,
    /// Where each output position looks in the input, when the architecture says.
    #[serde(skip)]
    pub field: Option<Field>,
    /// The stage the layer belongs to, for drawings that fold a stage's blocks together.
    #[serde(skip)]
    pub group: Option<String>,
    /// The layer adds its input (or a projection of it) to its output: a residual block,
    /// or a stage of them. Layers otherwise feed the next layer only, in order.
    #[serde(skip)]
    pub residual: bool,
}

/// A layer's receptive field along each axis: output row `i` sees input rows
/// `offset + i·stride .. offset + i·stride + size` (clipped to the input; the same for
/// columns). Composed layer by layer with [`Field::then`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub size: i64,
    pub stride: i64,
    pub offset: i64,
}

impl Field {
    /// The input itself.
    pub const INPUT: Field = Field {
        size: 1,
        stride: 1,
        offset: 0,
    };

    /// After a window of `kernel` at `stride` with `pad` on this field.
    pub fn then(self, kernel: i64, stride: i64, pad: i64) -> Field {
        Field {
            size: self.size + (kernel - 1) * self.stride,
            stride: self.stride * stride,
            offset: self.offset - pad * self.stride,
        }
    }

    /// The input rows (or columns) output position `i` sees, unclipped: `[start, end)`.
    pub fn span(&self, i: usize) -> (i64, i64) {
        let start = self.offset + i as i64 * self.stride;
        (start, start + self.size)
    }
}

/// The input a model was configured for: `[height, width]`, channels, normalisation.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

/// Which layers a tap acts on.
#[derive(Debug, Clone, Default)]
pub enum Select {
    #[default]
    None,
    All,
    Only(Vec<String>),
}

impl Select {
    fn contains(&self, name: &str) -> bool {
        match self {
            Select::None => false,
            Select::All => true,
            Select::Only(v) => v.iter().any(|n| n == name),
        }
    }
}

/// Observes a forward pass: keeps activations and inserts gradient probes by layer name.
#[derive(Default)]
pub struct Tap {
    pub keep: Select,
    pub probe: Select,
    /// Activations in network order.
    pub activations: Vec<(String, Tensor)>,
    /// Zero `Var`s added to the probed activations, in network order.
    pub probes: Vec<(String, Var)>,
    /// Guided backpropagation: rectified activations pass only positive gradients back.
    pub guided: bool,
    /// An intervention: the layer's output is replaced by `edit(output)` before the network
    /// goes on (ablations).
    pub edit: Option<Edit>,
    /// Ends the forward pass at this layer (see [`forward_to`]): nothing after it is computed.
    pub stop: Option<String>,
    /// Set when the pass ended at `stop`: the error the model returned is then this one.
    pub stopped: bool,
}

/// The output of the named layer for `x`, computing nothing after it: the pass is ended by
/// [`Tap::stop`], so every architecture gets this without code of its own. `tap`'s other
/// settings (probes, guided) apply; the layer's output stays in the graph for gradients.
pub fn forward_to(model: &dyn Model, x: &Tensor, layer: &str, tap: &mut Tap) -> candle_core::Result<Tensor> {
    tap.stop = Some(layer.to_string());
    tap.stopped = false;
    let r = model.forward(x, tap);
    tap.stop = None;
    let found = tap.activations.iter().rposition(|(n, _)| n == layer);
    match (r, found) {
        (Err(_), Some(i)) if tap.stopped => Ok(tap.activations.remove(i).1),
        (Err(e), _) => Err(e),
        // The layer is the output itself: the pass ran to the end.
        (Ok(logits), _) if model.layers().last().is_some_and(|l| l.name == layer) => Ok(logits),
        (Ok(_), _) => candle_core::bail!("the forward pass never reached layer `{layer}`"),
    }
}

/// A function of a layer's output.
pub type TensorFn = dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync;

/// Replaces one named layer's output (see [`Tap::edit`]).
pub struct Edit {
    pub layer: String,
    pub apply: Box<TensorFn>,
}

impl Tap {
    pub fn new(keep: Select, probe: Select) -> Self {
        Tap {
            keep,
            probe,
            ..Default::default()
        }
    }

    /// The network's ReLU. Models call this rather than `Tensor::relu`, so that guided
    /// backpropagation works for every architecture.
    pub fn relu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if nn::fast_dtype(x) {
            return crate::ops::relu(x, self.guided);
        }
        let y = x.relu()?;
        if self.guided {
            crate::ops::guided(&y)
        } else {
            Ok(y)
        }
    }

    /// `relu(a + b)`, the end of a residual block, guided like [`Tap::relu`]; one op.
    pub fn add_relu(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        if nn::fast_dtype(a) && a.dtype() == b.dtype() {
            return crate::ops::add_relu(a, b, self.guided);
        }
        self.relu(&(a + b)?)
    }

    /// The network's ReLU6 (`min(max(x, 0), 6)`), guided like [`Tap::relu`].
    pub fn relu6(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = nn::relu6(x)?;
        if self.guided {
            crate::ops::guided(&y)
        } else {
            Ok(y)
        }
    }

    /// Whether [`Tap::at`] does anything at this layer (keeps, probes, edits or stops
    /// there). A model may fuse a layer that is not touched with the one after it, leaving
    /// out its own output.
    pub fn touches(&self, name: &str) -> bool {
        self.keep.contains(name)
            || self.probe.contains(name)
            || self.stop.as_deref() == Some(name)
            || self.edit.as_ref().is_some_and(|e| e.layer == name)
    }

    /// Called by models at every named layer; returns the tensor the network continues with.
    pub fn at(&mut self, name: &str, t: Tensor) -> candle_core::Result<Tensor> {
        let t = match &self.edit {
            Some(e) if e.layer == name => (e.apply)(&t)?,
            _ => t,
        };
        let t = if self.probe.contains(name) {
            let p = Var::zeros(t.shape(), t.dtype(), t.device())?;
            let t = (t + p.as_tensor())?;
            self.probes.push((name.to_string(), p));
            t
        } else {
            t
        };
        if self.keep.contains(name) || self.stop.as_deref() == Some(name) {
            self.activations.push((name.to_string(), t.clone()));
        }
        if self.stop.as_deref() == Some(name) {
            self.stopped = true;
            candle_core::bail!("forward pass stopped at `{name}`");
        }
        Ok(t)
    }
}

pub trait Model: Send + Sync {
    fn arch(&self) -> &'static str;
    fn layers(&self) -> &[LayerInfo];
    fn num_classes(&self) -> usize;
    /// Runs the network on an `(N, C, H, W)` batch and returns the logits `(N, classes)`.
    fn forward(&self, x: &Tensor, tap: &mut Tap) -> candle_core::Result<Tensor>;

    /// The logits from `x`, the output of the named layer, on: the rest of the network
    /// only. `None` where the architecture cannot start inside (callers then run
    /// [`Model::forward`] with a [`Tap::edit`] instead).
    fn forward_from(&self, _layer: &str, _x: &Tensor, _tap: &mut Tap) -> Option<candle_core::Result<Tensor>> {
        None
    }

    /// The logits of copies of one input `x` `(1, C, H, W)`, copy `i` with `patches[i]`
    /// `(C, ph, pw)` written at `origins[i]` (occlusion). By default the copies are made
    /// and run; a model whose early layers are convolutions can compute only what each
    /// patch reaches ([`region`]).
    fn forward_patched(&self, x: &Tensor, patches: &Tensor, origins: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        self.forward(&region::copies(x, patches, origins)?, &mut Tap::default())
    }

    /// The network as a chain of plain steps, when it is one: what the site's in-browser
    /// playground runs (`pages::playground`). `None` (the default) leaves the model out.
    fn chain(&self) -> Option<Vec<ChainStep>> {
        None
    }

    /// How many copies [`Model::forward_patched`] should get at once, given the batch size
    /// used for full inputs. Models that compute only the patches' reach want more: the
    /// unchanged input's pass is shared by every copy of a call.
    fn patched_batch(&self, batch: usize) -> usize {
        batch
    }
}

/// One step of [`Model::chain`]: the named layer it outputs, and what it computes. Weights
/// are named by their state-dict tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainStep {
    pub layer: String,
    pub op: ChainOp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChainOp {
    /// A square convolution with symmetric zero padding; `weight` is `out × in × k × k`.
    Conv {
        weight: String,
        bias: Option<String>,
        out: usize,
        kernel: usize,
        pad: usize,
        stride: usize,
    },
    Relu,
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    /// `y = W x + b` on the flattened input; `weight` is `out × in`.
    Linear {
        weight: String,
        bias: Option<String>,
        out: usize,
    },
}

/// An architecture the config can name.
pub struct Architecture {
    pub id: &'static str,
    pub summary: &'static str,
    /// The layer Grad-CAM uses unless told otherwise: the output of the last conv block.
    pub gradcam_layer: &'static str,
    /// The checkpoints of the cascading randomisation test, from the output down: each
    /// names the layers (by tensor-name prefix) re-initialised with those above it. Empty:
    /// every named layer with a conv or linear weight, from the top.
    pub randomisation: &'static [&'static str],
    /// The layers whose units are analysed when `units.layers` is left out. Empty: the
    /// Grad-CAM layer and the pooled features before the classifier.
    pub unit_layers: &'static [&'static str],
    /// Checks that the configured input fits the architecture.
    pub check_input: fn(&InputSpec) -> std::result::Result<(), String>,
    /// The tensors a weights file must hold, with their shapes.
    pub tensors: fn(&InputSpec, usize) -> layer::Tensors,
    pub build: fn(VarBuilder, &InputSpec, usize) -> candle_core::Result<Box<dyn Model>>,
    /// The graph of an ONNX model (`arch: onnx`), which `tensors` and `build` then ignore:
    /// use [`Architecture::expected_tensors`] and [`Architecture::build_model`].
    pub graph: Option<&'static onnx::Graph>,
}

impl Architecture {
    /// The tensors a weights file must hold, with their shapes.
    pub fn expected_tensors(&self, input: &InputSpec, classes: usize) -> layer::Tensors {
        match self.graph {
            Some(g) => onnx::tensors(g),
            None => (self.tensors)(input, classes),
        }
    }

    /// The network with the weights `vb` holds.
    pub fn build_model(
        &self,
        vb: VarBuilder,
        input: &InputSpec,
        classes: usize,
    ) -> candle_core::Result<Box<dyn Model>> {
        match self.graph {
            Some(g) => onnx::build(g, vb),
            None => (self.build)(vb, input, classes),
        }
    }
}

impl std::fmt::Debug for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Architecture({})", self.id)
    }
}

/// The registry of built-in architectures.
pub const ARCHITECTURES: &[Architecture] = &[
    lenet5::ARCH,
    efficientnet_lite0::ARCH,
    resnet::RESNET18,
    resnet::RESNET34,
    resnet::RESNET50,
    vgg::VGG11,
    vgg::VGG11_BN,
    vgg::VGG16,
    vgg::VGG16_BN,
    alexnet::ARCH,
    mobilenet_v2::ARCH,
];

pub fn architecture(id: &str) -> Option<&'static Architecture> {
    ARCHITECTURES.iter().find(|a| a.id == id)
}

pub fn architecture_ids() -> Vec<&'static str> {
    ARCHITECTURES.iter().map(|a| a.id).collect()
}

/// A model with its weights, as loaded from a file.
pub struct LoadedModel {
    pub model: Box<dyn Model>,
    /// Every tensor of the weights file, as f32, by name.
    pub tensors: BTreeMap<String, Tensor>,
}

/// Loads a weights file and checks it against the architecture, tensor by tensor.
pub fn load(arch: &Architecture, path: &Path, input: &InputSpec, classes: usize) -> Result<LoadedModel> {
    load_as(arch, path, input, classes, DType::F32)
}

/// [`load`], computing in `dtype` (f64 serves finite-difference checks).
pub fn load_as(
    arch: &Architecture,
    path: &Path,
    input: &InputSpec,
    classes: usize,
    dtype: DType,
) -> Result<LoadedModel> {
    let raw = read_weights(path)?;
    let tensors = check_tensors(arch, path, raw, input, classes)?;
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?)))
        .collect::<candle_core::Result<_>>()?;
    let vb = VarBuilder::from_tensors(map, dtype, &Device::Cpu);
    let model = arch
        .build_model(vb, input, classes)
        .map_err(|e| Error::at(path, format!("cannot build {} from these weights: {e}", arch.id)))?;
    Ok(LoadedModel { model, tensors })
}

/// Reads every tensor of a weights file: safetensors, or a PyTorch zip `.pth`/`.pt`.
pub fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "safetensors" => candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| match e {
            candle_core::Error::Io(e) => Error::io(path, e),
            e => Error::at(
                path,
                format!(
                    "cannot read the weights as safetensors: {e} (the file is truncated, corrupt or not safetensors)"
                ),
            ),
        }),
        "pth" | "pt" | "bin" => {
            let mut head = [0u8; 4];
            {
                use std::io::Read;
                let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let _ = f.read(&mut head).map_err(|e| Error::io(path, e))?;
            }
            if head != *b"PK\x03\x04" {
                return Err(Error::at(
                    path,
                    "not a zip-format PyTorch file: this looks like the legacy (pre-1.6) format, which cannot be read. \
                     Convert it with PyTorch: `sd = torch.load(\"old.pth\"); torch.save(sd, \"new.pth\")` \
                     (zip format), or better `safetensors.torch.save_file(sd, \"model.safetensors\")`",
                ));
            }
            let mut all = candle_core::pickle::read_all(path);
            // Checkpoints often nest the state dict under a key.
            for key in ["state_dict", "model"] {
                if all.as_ref().map_or(true, |v| v.is_empty()) {
                    if let Ok(v) = candle_core::pickle::read_all_with_key(path, Some(key)) {
                        if !v.is_empty() {
                            all = Ok(v);
                        }
                    }
                }
            }
            let all = all.map_err(|e| Error::at(path, format!("cannot read the PyTorch file: {e}")))?;
            if all.is_empty() {
                return Err(Error::at(
                    path,
                    "no tensors found: expected a state_dict saved with torch.save",
                ));
            }
            Ok(all.into_iter().collect())
        }
        "onnx" => onnx::graph::read_weights(path),
        _ => Err(Error::at(
            path,
            format!(
                "unsupported weights format `.{ext}`: expected `.safetensors`, an ONNX `.onnx` (with `arch: onnx`), or a PyTorch `.pth`/`.pt` in zip format"
            ),
        )),
    }
}

fn check_tensors(
    arch: &Architecture,
    path: &Path,
    raw: HashMap<String, Tensor>,
    input: &InputSpec,
    classes: usize,
) -> Result<BTreeMap<String, Tensor>> {
    let expected = arch.expected_tensors(input, classes);
    // An ONNX file also holds constants that are not weights.
    let raw = if arch.graph.is_some() {
        let names: std::collections::HashSet<&String> = expected.iter().map(|(n, _)| n).collect();
        raw.into_iter().filter(|(k, _)| names.contains(k)).collect()
    } else {
        raw
    };
    let mut out = BTreeMap::new();
    for (name, shape) in &expected {
        let Some(t) = raw.get(name) else {
            return Err(Error::at(
                path,
                format!("tensor `{name}` is missing: {} expects shape {shape:?}", arch.id),
            ));
        };
        if t.dims() != shape.as_slice() {
            return Err(Error::at(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, but {} expects {shape:?} (input {}×{}×{}, {classes} classes from the classes file)",
                    t.dims(),
                    arch.id,
                    input.channels,
                    input.height,
                    input.width
                ),
            ));
        }
        let t = match t.dtype() {
            DType::F32 => t.clone(),
            DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
            dt => {
                return Err(Error::at(
                    path,
                    format!("tensor `{name}` has dtype {dt:?}; expected f32, f16 or bf16"),
                ))
            }
        };
        out.insert(name.clone(), t);
    }
    // Batch norm's step counter is bookkeeping for training, not a parameter.
    let mut unexpected: Vec<&String> = raw
        .keys()
        .filter(|k| !out.contains_key(*k) && !k.ends_with("num_batches_tracked"))
        .collect();
    unexpected.sort();
    if let Some(name) = unexpected.first() {
        return Err(Error::at(
            path,
            format!(
                "unexpected tensor `{name}` (shape {:?}): {} has no such parameter{}",
                raw[*name].dims(),
                arch.id,
                if unexpected.len() > 1 {
                    format!(" ({} unexpected tensors in all)", unexpected.len())
                } else {
                    String::new()
                }
            ),
        ));
    }
    Ok(out)
}

/// The result of one forward + backward pass from a class score.
pub struct Gradients {
    pub logits: Tensor,
    /// d score / d input, same shape as the input.
    pub input: Tensor,
    /// (layer, activation, d score / d activation) for every probed layer, in network order.
    pub layers: Vec<(String, Tensor, Tensor)>,
}

/// Runs one forward and one backward pass: the score is `Σ_n logits[n, targets[n]]`,
/// so each sample of the batch gets the gradient of its own target's logit.
pub fn gradients(model: &dyn Model, x: &Tensor, targets: &[usize], layers: Select) -> Result<Gradients> {
    pass(model, x, targets, layers, false)
}

/// [`gradients`] with guided ReLUs (guided backpropagation).
pub fn guided_gradients(model: &dyn Model, x: &Tensor, targets: &[usize], layers: Select) -> Result<Gradients> {
    pass(model, x, targets, layers, true)
}

fn pass(model: &dyn Model, x: &Tensor, targets: &[usize], layers: Select, guided: bool) -> Result<Gradients> {
    let n = x.dim(0)?;
    if targets.len() != n {
        return Err(Error::msg(format!("{} targets for a batch of {n}", targets.len())));
    }
    let input = Var::from_tensor(x)?;
    let mut tap = Tap::new(layers.clone(), layers);
    tap.guided = guided;
    let logits = model.forward(input.as_tensor(), &mut tap)?;
    let idx = Tensor::from_vec(
        targets.iter().map(|&t| t as u32).collect::<Vec<_>>(),
        (n, 1),
        x.device(),
    )?;
    let score = logits.gather(&idx, 1)?.sum_all()?;
    let grads = score.backward()?;
    let zeros = |t: &Tensor| t.zeros_like();
    let input_grad = match grads.get(input.as_tensor()) {
        Some(g) => g.clone(),
        None => zeros(input.as_tensor())?,
    };
    let mut acts: HashMap<String, Tensor> = tap.activations.into_iter().collect();
    let mut out = Vec::new();
    for (name, probe) in tap.probes {
        let g = match grads.get(probe.as_tensor()) {
            Some(g) => g.clone(),
            None => zeros(probe.as_tensor())?,
        };
        let a = acts.remove(&name).expect("probed layers are kept");
        out.push((name, a.detach(), g));
    }
    Ok(Gradients {
        logits: logits.detach(),
        input: input_grad,
        layers: out,
    })
}
