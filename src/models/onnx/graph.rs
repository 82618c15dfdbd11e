//! An ONNX file read into a graph of the ops this crate runs (`exec`): attributes checked,
//! constants and shape computations folded, every feature map's shape known, layers named.
//!
//! The graph is specialised for the configured input size and for a batch dimension that
//! stays first: shape computations (`Shape → Gather → Concat → Reshape`) are folded for a
//! batch of one, and a reshape's leading 1 stands for the batch.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::exec::{self, Op};
use super::proto::{self, AttributeProto, NodeProto, TensorProto};
use crate::error::{Error, Result};
use crate::models::{InputSpec, LayerKind};

/// Index of a value (a tensor flowing between nodes).
pub type ValueId = usize;

/// Where a node's weight comes from: a named initializer of the file, or a constant.
#[derive(Debug, Clone)]
pub enum Param {
    Weight(String, Vec<usize>),
    Const(Tensor),
}

/// A node of the executed graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's name in the file (or `op_type#index`), for errors.
    pub onnx: String,
    pub op_type: String,
    pub op: Op,
    /// Feature-map inputs, in the operator's order (weights are in `params`).
    pub inputs: Vec<ValueId>,
    pub params: Vec<Option<Param>>,
    pub outputs: Vec<ValueId>,
    /// The layer names of output 0: its own, then the module scopes it ends.
    pub names: Vec<String>,
}

/// A named layer of the graph, in node order.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub kind: LayerKind,
    /// Without the batch dimension.
    pub shape: Vec<usize>,
    pub weights: Vec<(String, Vec<usize>)>,
    /// The stage the layer is drawn in (the overview folds a stage into one column).
    pub group: Option<String>,
    /// A module that adds its input back (a residual block, or a stage of them).
    pub residual: bool,
    /// The module scopes the layer lies in, outermost first (its own, for a module).
    #[doc(hidden)]
    pub scopes: Vec<String>,
}

#[derive(Debug)]
pub struct Graph {
    pub path: PathBuf,
    pub nodes: Vec<Node>,
    /// Constants the nodes read as feature-map inputs (broadcast operands, ...).
    pub consts: Vec<(ValueId, Tensor)>,
    pub values: usize,
    pub input: ValueId,
    pub output: ValueId,
    /// Per value, the index of the last node that reads it (to free it after).
    pub last_use: Vec<usize>,
    pub layers: Vec<Layer>,
    /// Every weight initializer the nodes use, with its shape, in file order.
    pub weights: Vec<(String, Vec<usize>)>,
    pub classes: usize,
    /// The last spatial feature map before the network pools it away: Grad-CAM's default.
    pub cam_layer: String,
}

/// What a value is while the graph is read: a feature map (computed for a batch of one),
/// a float constant (possibly an initializer, by name), or integers from shapes.
#[derive(Clone)]
enum Val {
    Map(Tensor),
    Const(Tensor, Option<String>),
    Ints(Vec<usize>, Vec<i64>),
}

/// An error about one node, naming it, its operator and the file.
pub fn node_err(path: &Path, node: &str, op: &str, msg: impl std::fmt::Display) -> Error {
    Error::at(path, format!("node `{node}` ({op}): {msg}"))
}

/// The operators the graph may contain (documented in docs/models.md).
pub const OPERATORS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

impl Graph {
    /// Reads and checks the ONNX file `path` (whose content is `bytes`) for an input of
    /// `spec` and `classes` outputs.
    pub fn load(path: &Path, bytes: &[u8], spec: &InputSpec, classes: usize) -> Result<Graph> {
        let model = decode_model(path, bytes)?;
        let mut initializers = HashMap::new();
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| Error::at(path, "the ONNX file has no graph"))?;
        for t in &graph.initializer {
            initializers.insert(t.name.clone(), t);
        }
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(0, |o| o.version);
        if opset != 0 && opset < 7 {
            return Err(Error::at(
                path,
                format!("opset {opset} is too old: export with opset 13 or newer"),
            ));
        }
        let mut b = Builder {
            path: path.to_path_buf(),
            ids: HashMap::new(),
            vals: Vec::new(),
            nodes: Vec::new(),
            layers_seen: HashSet::new(),
        };
        // The input: the first graph input that is not an initializer.
        let input = graph
            .input
            .iter()
            .find(|i| !initializers.contains_key(&i.name))
            .ok_or_else(|| Error::at(path, "the graph has no input"))?;
        check_input(path, input, spec)?;
        let x = Tensor::zeros((1, spec.channels, spec.height, spec.width), DType::F32, &Device::Cpu)?;
        let input_id = b.define(&input.name, Val::Map(x));
        for t in &graph.initializer {
            let v = read_initializer(path, t)?;
            b.define(&t.name, v);
        }
        let mut scopes: Vec<(Vec<String>, String)> = Vec::new();
        for (i, n) in graph.node.iter().enumerate() {
            let label = if n.name.is_empty() {
                format!("{}#{i}", n.op_type)
            } else {
                n.name.clone()
            };
            if !(n.domain.is_empty() || n.domain == "ai.onnx") {
                return Err(node_err(
                    path,
                    &label,
                    &n.op_type,
                    format!(
                        "operator domain `{}` is not supported (only the standard ONNX operators are)",
                        n.domain
                    ),
                ));
            }
            let before = b.nodes.len();
            b.node(n, &label).map_err(|e| match e {
                Error::Candle(e) => node_err(path, &label, &n.op_type, e),
                e => e,
            })?;
            if b.nodes.len() > before {
                scopes.push(module_scopes(n, &label));
            }
        }
        let out_name = graph
            .output
            .first()
            .map(|o| o.name.clone())
            .ok_or_else(|| Error::at(path, "the graph has no output"))?;
        let output = *b
            .ids
            .get(&out_name)
            .ok_or_else(|| Error::at(path, format!("the graph's output `{out_name}` is never computed")))?;
        let out_shape = match &b.vals[output] {
            Val::Map(t) => t.dims().to_vec(),
            _ => return Err(Error::at(path, "the graph's output does not depend on its input")),
        };
        if out_shape.len() != 2 || out_shape[1] != classes {
            return Err(Error::at(
                path,
                format!(
                    "the graph's output `{out_name}` has shape {out_shape:?}; expected [N, {classes}] logits ({classes} classes from the classes file)"
                ),
            ));
        }
        b.finish(input_id, output, scopes, classes)
    }
}

fn read_model(path: &Path) -> Result<proto::ModelProto> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_model(path, &bytes)
}

fn decode_model(path: &Path, bytes: &[u8]) -> Result<proto::ModelProto> {
    let model = proto::decode(bytes).map_err(|e| {
        Error::at(
            path,
            format!("cannot read the file as ONNX: {e} (it is truncated, corrupt or not an ONNX model)"),
        )
    })?;
    if let Some(f) = model.functions.first() {
        return Err(Error::at(
            path,
            format!(
                "the model defines local functions (`{}`), which are not supported: export with `torch.onnx.export(..., dynamo=True, optimize=True)` or the TorchScript exporter (`dynamo=False`), which inline them",
                f.name
            ),
        ));
    }
    Ok(model)
}

/// Every weight tensor of an ONNX file, by initializer name (`models::read_weights`).
pub fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let model = read_model(path)?;
    let graph = model.graph.unwrap_or_default();
    let mut out = HashMap::new();
    for t in &graph.initializer {
        if let Val::Const(v, _) = read_initializer(path, t)? {
            out.insert(t.name.clone(), v);
        }
    }
    Ok(out)
}

fn check_input(path: &Path, input: &proto::ValueInfoProto, spec: &InputSpec) -> Result<()> {
    let dims: Vec<Option<i64>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
        .unwrap_or_default();
    let want = [None, Some(spec.channels), Some(spec.height), Some(spec.width)];
    if !dims.is_empty() && dims.len() != 4 {
        return Err(Error::at(
            path,
            format!(
                "the graph's input `{}` has {} dimensions; expected 4 (batch, channels, height, width)",
                input.name,
                dims.len()
            ),
        ));
    }
    for (i, (d, w)) in dims.iter().zip(want).enumerate().skip(1) {
        if let (Some(d), Some(w)) = (d, w) {
            if *d > 0 && *d as usize != w {
                return Err(Error::at(
                    path,
                    format!(
                        "the graph's input `{}` is {}, but the config's `input` gives {}×{}×{} (channels × height × width): dimension {i} differs",
                        input.name,
                        dims.iter()
                            .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
                            .collect::<Vec<_>>()
                            .join("×"),
                        spec.channels,
                        spec.height,
                        spec.width
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn read_initializer(path: &Path, t: &TensorProto) -> Result<Val> {
    let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
    let n: usize = shape.iter().product();
    let raw: std::borrow::Cow<[u8]> = if t.data_location == 1 {
        std::borrow::Cow::Owned(external(path, t)?)
    } else {
        std::borrow::Cow::Borrowed(&t.raw_data)
    };
    let bad = |what: &str| Error::at(path, format!("initializer `{}`: {what}", t.name));
    let le = |w: usize| -> Result<&[u8]> {
        if !raw.is_empty() && raw.len() != n * w {
            return Err(bad(&format!("holds {} bytes for {n} elements", raw.len())));
        }
        Ok(&raw)
    };
    let floats = |v: Vec<f32>| -> Result<Val> {
        if v.len() != n {
            return Err(bad(&format!("holds {} values for shape {shape:?}", v.len())));
        }
        Ok(Val::Const(
            Tensor::from_vec(v, shape.as_slice(), &Device::Cpu)?,
            Some(t.name.clone()),
        ))
    };
    match t.data_type {
        1 => {
            let r = le(4)?;
            if r.is_empty() {
                floats(t.float_data.clone())
            } else {
                floats(
                    r.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
        }
        11 => {
            let r = le(8)?;
            if r.is_empty() {
                floats(t.double_data.iter().map(|&v| v as f32).collect())
            } else {
                floats(
                    r.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                        .collect(),
                )
            }
        }
        10 | 16 => {
            let r = le(2)?;
            let bits: Vec<u16> = if r.is_empty() {
                t.int32_data.iter().map(|&v| v as u16).collect()
            } else {
                r.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
            };
            floats(
                bits.into_iter()
                    .map(|b| {
                        if t.data_type == 10 {
                            half::f16::from_bits(b).to_f32()
                        } else {
                            half::bf16::from_bits(b).to_f32()
                        }
                    })
                    .collect(),
            )
        }
        7 => {
            let r = le(8)?;
            let v: Vec<i64> = if r.is_empty() {
                t.int64_data.clone()
            } else {
                r.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                    .collect()
            };
            Ok(Val::Ints(shape, v))
        }
        6 | 9 | 2 | 3 | 5 | 4 => {
            let w = match t.data_type {
                6 => 4,
                5 | 4 => 2,
                _ => 1,
            };
            let r = le(w)?;
            let v: Vec<i64> = if r.is_empty() {
                t.int32_data.iter().map(|&v| v as i64).collect()
            } else {
                r.chunks_exact(w)
                    .map(|c| match (t.data_type, w) {
                        (6, _) => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                        (5, _) => i16::from_le_bytes([c[0], c[1]]) as i64,
                        (4, _) => u16::from_le_bytes([c[0], c[1]]) as i64,
                        (3, _) => c[0] as i8 as i64,
                        _ => c[0] as i64,
                    })
                    .collect()
            };
            Ok(Val::Ints(shape, v))
        }
        d => Err(bad(&format!(
            "data type {d} is not supported (float, double, half, bfloat16 or integers)"
        ))),
    }
}

/// The bytes of an initializer kept in a file beside the model (`external_data=True`).
fn external(path: &Path, t: &TensorProto) -> Result<Vec<u8>> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
    let loc = get("location")
        .ok_or_else(|| Error::at(path, format!("initializer `{}` is external but names no file", t.name)))?;
    let file = path.parent().unwrap_or(Path::new(".")).join(&loc);
    let offset: u64 = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bytes = std::fs::read(&file).map_err(|e| {
        Error::at(
            path,
            format!(
                "initializer `{}` is kept in `{}`, which cannot be read: {e} (keep the data file beside the model, or export with `external_data=False`)",
                t.name,
                file.display()
            ),
        )
    })?;
    let len: u64 = get("length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(bytes.len() as u64 - offset.min(bytes.len() as u64));
    let (s, e) = (offset as usize, (offset + len) as usize);
    if e > bytes.len() {
        return Err(Error::at(
            path,
            format!(
                "initializer `{}`: `{}` is shorter than its offset and length",
                t.name,
                file.display()
            ),
        ));
    }
    Ok(bytes[s..e].to_vec())
}

/// The module path the exporter recorded for a node, outermost first, and the op's own
/// name: from the dynamo exporter's `pkg.torch.onnx.name_scopes` (`['', 'layer1',
/// 'layer1.0', 'layer1.0.conv1', 'conv2d']`), else from the TorchScript exporter's node name
/// (`/layer1/layer1.0/conv1/Conv`), else the node's name.
fn module_scopes(n: &NodeProto, label: &str) -> (Vec<String>, String) {
    if let Some(p) = n.metadata_props.iter().find(|p| p.key == "pkg.torch.onnx.name_scopes") {
        let items: Vec<String> = p
            .value
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().trim_matches('\'').trim_matches('"').to_string())
            .collect();
        // The last item names the op itself; the empty first one the top module.
        if let Some((op, scopes)) = items.split_last() {
            return (scopes.iter().filter(|s| !s.is_empty()).cloned().collect(), op.clone());
        }
    }
    if n.name.starts_with('/') {
        let parts: Vec<&str> = n.name.split('/').filter(|s| !s.is_empty()).collect();
        let mut out: Vec<String> = Vec::new();
        for p in parts.iter().take(parts.len().saturating_sub(1)) {
            // Children of a Sequential come qualified (`layer1.0` under `layer1`), the
            // attributes of a module plain (`conv1` under `layer1.0`).
            let full = match out.last() {
                Some(prev) if !p.starts_with(&format!("{prev}.")) => format!("{prev}.{p}"),
                _ => p.to_string(),
            };
            out.push(full);
        }
        return (out, parts.last().map_or(label.to_string(), |s| s.to_string()));
    }
    (Vec::new(), label.to_string())
}

struct Builder {
    path: PathBuf,
    ids: HashMap<String, ValueId>,
    vals: Vec<Val>,
    nodes: Vec<Node>,
    layers_seen: HashSet<String>,
}

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}
fn attr_i(n: &NodeProto, name: &str, default: i64) -> i64 {
    attr(n, name).map_or(default, |a| a.i)
}
fn attr_f(n: &NodeProto, name: &str, default: f32) -> f32 {
    attr(n, name).map_or(default, |a| a.f)
}
fn attr_ints(n: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(n, name).map(|a| a.ints.clone())
}

/// Normalises a possibly negative axis of a rank-`rank` tensor.
fn axis(a: i64, rank: usize) -> candle_core::Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        candle_core::bail!("axis {a} is out of range for rank {rank}")
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

impl Builder {
    fn define(&mut self, name: &str, v: Val) -> ValueId {
        let id = self.vals.len();
        self.vals.push(v);
        self.ids.insert(name.to_string(), id);
        id
    }

    fn get(&self, n: &NodeProto, i: usize) -> candle_core::Result<Option<(ValueId, &Val)>> {
        match n.input.get(i) {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => match self.ids.get(s) {
                Some(&id) => Ok(Some((id, &self.vals[id]))),
                None => candle_core::bail!("input `{s}` is not computed before this node"),
            },
        }
    }

    fn need(&self, n: &NodeProto, i: usize) -> candle_core::Result<(ValueId, &Val)> {
        self.get(n, i)?
            .ok_or_else(|| candle_core::Error::Msg(format!("input {i} is missing")))
    }

    /// Integers from an input (a constant or a folded shape computation).
    fn ints(&self, n: &NodeProto, i: usize) -> candle_core::Result<Option<Vec<i64>>> {
        match self.get(n, i)? {
            None => Ok(None),
            Some((_, Val::Ints(_, v))) => Ok(Some(v.clone())),
            Some((_, Val::Const(t, _))) => Ok(Some(
                t.flatten_all()?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(|v| v as i64)
                    .collect(),
            )),
            Some((_, Val::Map(_))) => candle_core::bail!(
                "input {i} must be a constant (or computed from shapes only), but it depends on the network's input"
            ),
        }
    }

    /// A weight input: an initializer (by name) or a constant.
    fn param(&self, n: &NodeProto, i: usize) -> candle_core::Result<Option<Param>> {
        match self.get(n, i)? {
            None => Ok(None),
            Some((_, Val::Const(t, Some(name)))) => Ok(Some(Param::Weight(name.clone(), t.dims().to_vec()))),
            Some((_, Val::Const(t, None))) => Ok(Some(Param::Const(t.clone()))),
            Some((_, Val::Ints(s, v))) => Ok(Some(Param::Const(Tensor::from_vec(
                v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                s.as_slice(),
                &Device::Cpu,
            )?))),
            Some((_, Val::Map(_))) => candle_core::bail!(
                "input {i} (a weight) must be an initializer or a constant, but it is computed from the network's input"
            ),
        }
    }

    fn out(&mut self, n: &NodeProto, k: usize, v: Val) -> ValueId {
        let name = n.output.get(k).cloned().unwrap_or_default();
        self.define(&name, v)
    }

    fn node(&mut self, n: &NodeProto, label: &str) -> Result<()> {
        let path = self.path.clone();
        let err = |msg: String| node_err(&path, label, &n.op_type, msg);
        let op_type = n.op_type.as_str();
        // Integer and constant work is folded here, not run.
        match op_type {
            "Constant" => {
                let a = n.attribute.first().ok_or_else(|| err("no value".into()))?;
                let v = match a.name.as_str() {
                    "value" => {
                        let t = a.t.as_ref().ok_or_else(|| err("no tensor".into()))?;
                        match read_initializer(&path, t)? {
                            Val::Const(t, _) => Val::Const(t, None),
                            v => v,
                        }
                    }
                    "value_float" => Val::Const(Tensor::new(a.f, &Device::Cpu)?, None),
                    "value_floats" => Val::Const(Tensor::new(a.floats.as_slice(), &Device::Cpu)?, None),
                    "value_int" => Val::Ints(vec![], vec![a.i]),
                    "value_ints" => Val::Ints(vec![a.ints.len()], a.ints.clone()),
                    other => return Err(err(format!("constant attribute `{other}` is not supported"))),
                };
                self.out(n, 0, v);
                return Ok(());
            }
            "Shape" => {
                let (_, v) = self.need(n, 0)?;
                let dims: Vec<i64> = match v {
                    Val::Map(t) | Val::Const(t, _) => t.dims().iter().map(|&d| d as i64).collect(),
                    Val::Ints(s, _) => s.iter().map(|&d| d as i64).collect(),
                };
                let r = dims.len() as i64;
                let clampi = |v: i64| if v < 0 { (v + r).clamp(0, r) } else { v.clamp(0, r) };
                let s = clampi(attr_i(n, "start", 0)) as usize;
                let e = clampi(attr_i(n, "end", r)) as usize;
                let d = dims[s..e.max(s)].to_vec();
                self.out(n, 0, Val::Ints(vec![d.len()], d));
                return Ok(());
            }
            "ConstantOfShape" => {
                let shape: Vec<usize> = self
                    .ints(n, 0)?
                    .unwrap_or_default()
                    .iter()
                    .map(|&d| d as usize)
                    .collect();
                let (value, int) = match attr(n, "value").and_then(|a| a.t.as_ref()) {
                    Some(t) => match read_initializer(&path, t)? {
                        Val::Ints(_, v) => (v.first().copied().unwrap_or(0) as f32, true),
                        Val::Const(c, _) => (
                            c.flatten_all()?.to_vec1::<f32>()?.first().copied().unwrap_or(0.0),
                            false,
                        ),
                        Val::Map(_) => unreachable!("initializers are constants"),
                    },
                    None => (0.0, false),
                };
                let count: usize = shape.iter().product();
                let v = if int {
                    Val::Ints(shape, vec![value as i64; count])
                } else {
                    Val::Const(Tensor::full(value, shape.as_slice(), &Device::Cpu)?, None)
                };
                self.out(n, 0, v);
                return Ok(());
            }
            _ => {}
        }
        let inputs: Vec<Val> = (0..n.input.len())
            .filter_map(|i| self.get(n, i).transpose())
            .map(|r| r.map(|(_, v)| v.clone()))
            .collect::<candle_core::Result<_>>()?;
        let all_ints = !inputs.is_empty() && inputs.iter().all(|v| matches!(v, Val::Ints(..)));
        if all_ints && op_type != "Cast" || op_type == "Cast" && matches!(inputs.first(), Some(Val::Ints(..))) {
            let v = fold_ints(n, &inputs).map_err(&err)?;
            for (k, v) in v.into_iter().enumerate() {
                self.out(n, k, v);
            }
            return Ok(());
        }
        if op_type == "Cast" {
            // A float tensor cast to an integer type is a shape computation's input.
            let to = attr_i(n, "to", 1);
            let v = match inputs.first() {
                Some(Val::Const(t, _)) if matches!(to, 6 | 7) => {
                    let v: Vec<i64> = t
                        .flatten_all()?
                        .to_vec1::<f32>()?
                        .into_iter()
                        .map(|v| v as i64)
                        .collect();
                    Val::Ints(t.dims().to_vec(), v)
                }
                Some(v @ (Val::Const(..) | Val::Map(_))) if matches!(to, 1 | 10 | 11 | 16) => v.clone(),
                _ => return Err(err(format!("cast to data type {to} is not supported"))),
            };
            self.out(n, 0, v);
            return Ok(());
        }
        let any_map = (0..n.input.len()).any(|i| matches!(self.get(n, i), Ok(Some((_, Val::Map(_))))));
        if !any_map {
            let t = fold_consts(n, &inputs).map_err(&err)?;
            self.out(n, 0, Val::Const(t, None));
            return Ok(());
        }
        let op = self.lower(n).map_err(|e| err(e.to_string()))?;
        let Some(op) = op else {
            if matches!(op_type, "Softmax" | "LogSoftmax") {
                return Err(err(
                    "a softmax is not supported: the methods explain logits, so export the network without its final softmax"
                        .to_string(),
                ));
            }
            return Err(err(format!(
                "operator `{op_type}` is not supported (supported: {})",
                OPERATORS.join(", ")
            )));
        };
        // Which inputs are feature maps, which are weights.
        let roles = op.roles();
        let mut ins = Vec::new();
        let mut params = Vec::new();
        for (i, role) in roles.iter().enumerate() {
            match role {
                exec::Role::Map => match self.get(n, i)? {
                    Some((id, _)) => ins.push(id),
                    None => return Err(err(format!("input {i} is missing"))),
                },
                exec::Role::Param => params.push(self.param(n, i)?),
            }
        }
        let tensors: Vec<Tensor> = ins
            .iter()
            .map(|&id| match &self.vals[id] {
                Val::Map(t) | Val::Const(t, _) => Ok(t.clone()),
                Val::Ints(s, v) => Tensor::from_vec(
                    v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                    s.as_slice(),
                    &Device::Cpu,
                ),
            })
            .collect::<candle_core::Result<_>>()?;
        if !matches!(self.vals[ins[0]], Val::Map(_)) && !matches!(op, exec::Op::Binary(_) | exec::Op::Concat { .. }) {
            return Err(err("the first input must depend on the network's input".to_string()));
        }
        let weights = |p: &Param| -> Tensor {
            match p {
                Param::Const(t) => t.clone(),
                Param::Weight(name, _) => match &self.vals[self.ids[name]] {
                    Val::Const(t, _) => t.clone(),
                    _ => unreachable!("weights are constants"),
                },
            }
        };
        let exec = exec::Exec::new(&op, &params, weights).map_err(|e| err(e.to_string()))?;
        // A dry run for a batch of one: every map's shape, and the op's checks on real data.
        let mut tap = crate::models::Tap::default();
        let outs = exec.run(&tensors, &mut tap).map_err(|e| err(e.to_string()))?;
        for t in &outs {
            if t.dim(0).ok() != Some(1) {
                return Err(err(format!(
                    "the output {:?} does not keep the batch dimension first, which is not supported",
                    t.dims()
                )));
            }
        }
        let mut outputs = Vec::new();
        for (k, t) in outs.into_iter().enumerate() {
            outputs.push(self.out(n, k, Val::Map(t)));
        }
        self.nodes.push(Node {
            onnx: label.to_string(),
            op_type: n.op_type.clone(),
            op,
            inputs: ins,
            params,
            outputs,
            names: Vec::new(),
        });
        Ok(())
    }

    /// The op for a node whose inputs are not all integers; `None`: not supported.
    fn lower(&self, n: &NodeProto) -> candle_core::Result<Option<Op>> {
        let map_dims = |i: usize| -> candle_core::Result<Vec<usize>> {
            match self.need(n, i)?.1 {
                Val::Map(t) | Val::Const(t, _) => Ok(t.dims().to_vec()),
                Val::Ints(s, _) => Ok(s.clone()),
            }
        };
        let square = |name: &str, v: &[i64]| -> candle_core::Result<usize> {
            match v {
                [a, b] if a == b && *a > 0 => Ok(*a as usize),
                _ => candle_core::bail!("`{name}` {v:?} is not supported (only equal values for height and width)"),
            }
        };
        let pads4 = |n: &NodeProto| -> candle_core::Result<[usize; 4]> {
            if let Some(a) = attr(n, "auto_pad") {
                let s = String::from_utf8_lossy(&a.s);
                if s != "NOTSET" && s != "VALID" {
                    candle_core::bail!("`auto_pad` {s} is not supported: export with explicit padding");
                }
            }
            match attr_ints(n, "pads").as_deref() {
                None | Some([]) => Ok([0; 4]),
                // ONNX: [top, left, bottom, right].
                Some(&[t, l, b, r]) if t >= 0 && l >= 0 && b >= 0 && r >= 0 => {
                    Ok([t as usize, b as usize, l as usize, r as usize])
                }
                Some(p) => candle_core::bail!("`pads` {p:?} is not supported"),
            }
        };
        let no_dilation = |n: &NodeProto| -> candle_core::Result<()> {
            match attr_ints(n, "dilations") {
                Some(d) if d.iter().any(|&v| v != 1) => candle_core::bail!("dilations {d:?} are not supported"),
                _ => Ok(()),
            }
        };
        let op = match n.op_type.as_str() {
            "Conv" => {
                no_dilation(n)?;
                let w = map_dims(1)?;
                if w.len() != 4 {
                    candle_core::bail!("only 2-D convolutions are supported (weight {w:?})");
                }
                let k = square("kernel_shape", &[w[2] as i64, w[3] as i64])?;
                let stride = square("strides", &attr_ints(n, "strides").unwrap_or(vec![1, 1]))?;
                Op::Conv {
                    k,
                    stride,
                    pads: pads4(n)?,
                    groups: attr_i(n, "group", 1).max(1) as usize,
                }
            }
            "Gemm" => Op::Gemm {
                alpha: attr_f(n, "alpha", 1.0),
                beta: attr_f(n, "beta", 1.0),
                trans_a: attr_i(n, "transA", 0) != 0,
                trans_b: attr_i(n, "transB", 0) != 0,
            },
            "MatMul" => match self.need(n, 1)?.1 {
                Val::Map(_) => candle_core::bail!(
                    "a product of two feature maps is not supported (the second factor must be a weight)"
                ),
                _ => Op::MatMul,
            },
            "Add" | "Sub" | "Mul" | "Div" => Op::Binary(n.op_type.clone()),
            "Relu" => Op::Relu,
            "Sigmoid" => Op::Sigmoid,
            "Sqrt" => Op::Sqrt,
            "HardSigmoid" => Op::HardSigmoid {
                alpha: attr_f(n, "alpha", 0.2),
                beta: attr_f(n, "beta", 0.5),
            },
            "HardSwish" => Op::HardSwish,
            "Clip" => {
                let (lo, hi) = if let Some(a) = attr(n, "min").or(attr(n, "max")) {
                    let _ = a;
                    (attr_f(n, "min", f32::MIN), attr_f(n, "max", f32::MAX))
                } else {
                    let f = |i: usize| -> candle_core::Result<Option<f32>> {
                        match self.get(n, i)? {
                            None => Ok(None),
                            Some((_, Val::Const(t, _))) => Ok(Some(t.flatten_all()?.to_vec1::<f32>()?[0])),
                            Some((_, Val::Ints(_, v))) => Ok(Some(v[0] as f32)),
                            Some(_) => candle_core::bail!("the bounds must be constants"),
                        }
                    };
                    (f(1)?.unwrap_or(f32::MIN), f(2)?.unwrap_or(f32::MAX))
                };
                Op::Clip { lo, hi }
            }
            "BatchNormalization" => {
                if attr_i(n, "training_mode", 0) != 0 {
                    candle_core::bail!("training-mode batch norm is not supported: export in eval mode");
                }
                Op::BatchNorm {
                    eps: attr_f(n, "epsilon", 1e-5),
                }
            }
            "MaxPool" | "AveragePool" => {
                no_dilation(n)?;
                let kernel = attr_ints(n, "kernel_shape").unwrap_or_default();
                let k = square("kernel_shape", &kernel)?;
                let stride = square("strides", &attr_ints(n, "strides").unwrap_or(vec![1, 1]))?;
                let pads = pads4(n)?;
                let ceil = attr_i(n, "ceil_mode", 0) != 0;
                if n.op_type == "MaxPool" {
                    if n.output.len() > 1 && !n.output[1].is_empty() {
                        candle_core::bail!("the indices output is not supported");
                    }
                    if pads[0] != pads[1] || pads[2] != pads[3] || pads[0] != pads[2] || 2 * pads[0] > k {
                        candle_core::bail!(
                            "padding {pads:?} is not supported (equal on every side, at most half the kernel)"
                        );
                    }
                    Op::MaxPool {
                        k,
                        stride,
                        pad: pads[0],
                        ceil,
                    }
                } else {
                    if ceil {
                        candle_core::bail!("`ceil_mode` is not supported for average pooling");
                    }
                    Op::AvgPool {
                        k,
                        stride,
                        pads,
                        count_pad: attr_i(n, "count_include_pad", 0) != 0,
                    }
                }
            }
            "GlobalAveragePool" => Op::Mean {
                axes: vec![2, 3],
                keep: true,
            },
            "ReduceMean" => {
                let rank = map_dims(0)?.len();
                let axes = match attr_ints(n, "axes") {
                    Some(a) => a,
                    None => self.ints(n, 1)?.unwrap_or_else(|| (0..rank as i64).collect()),
                };
                let axes: Vec<usize> = axes
                    .iter()
                    .map(|&a| axis(a, rank))
                    .collect::<candle_core::Result<_>>()?;
                if axes.contains(&0) {
                    candle_core::bail!("a mean over the batch dimension is not supported");
                }
                Op::Mean {
                    axes,
                    keep: attr_i(n, "keepdims", 1) != 0,
                }
            }
            "Concat" => {
                let rank = map_dims(0)?.len();
                let a = axis(attr_i(n, "axis", 0), rank)?;
                if a == 0 {
                    candle_core::bail!("concatenation along the batch dimension is not supported");
                }
                Op::Concat {
                    axis: a,
                    inputs: n.input.len(),
                }
            }
            "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
                // The per-sample shape of the output, from the input's (batch one).
                let dims = map_dims(0)?;
                let target: Vec<usize> = match n.op_type.as_str() {
                    "Flatten" => {
                        let a = attr_i(n, "axis", 1);
                        let a = if a < 0 { a + dims.len() as i64 } else { a };
                        if a < 0 || a as usize > dims.len() {
                            candle_core::bail!("axis {a} is out of range for rank {}", dims.len());
                        }
                        let a = a as usize;
                        let outer: usize = dims[..a.min(dims.len())].iter().product();
                        if a == 0 || outer != 1 {
                            candle_core::bail!("flattening into the batch dimension (axis {a}) is not supported");
                        }
                        vec![1, dims[a..].iter().product()]
                    }
                    "Reshape" => {
                        let t = self
                            .ints(n, 1)?
                            .ok_or_else(|| candle_core::Error::Msg("no target shape".into()))?;
                        reshape_target(&dims, &t, attr_i(n, "allowzero", 0) != 0).map_err(candle_core::Error::Msg)?
                    }
                    _ => {
                        let rank_out = dims.len();
                        let axes = match attr_ints(n, "axes") {
                            Some(a) => a,
                            None => self.ints(n, 1)?.unwrap_or_default(),
                        };
                        if n.op_type == "Squeeze" {
                            let axes: Vec<usize> = if axes.is_empty() {
                                (1..dims.len()).filter(|&i| dims[i] == 1).collect()
                            } else {
                                axes.iter()
                                    .map(|&a| axis(a, rank_out))
                                    .collect::<candle_core::Result<_>>()?
                            };
                            if axes.contains(&0) {
                                candle_core::bail!("squeezing the batch dimension is not supported");
                            }
                            dims.iter()
                                .enumerate()
                                .filter(|(i, _)| !axes.contains(i))
                                .map(|(_, &d)| d)
                                .collect()
                        } else {
                            let r = dims.len() + axes.len();
                            let axes: Vec<usize> =
                                axes.iter().map(|&a| axis(a, r)).collect::<candle_core::Result<_>>()?;
                            if axes.contains(&0) {
                                candle_core::bail!("a new leading dimension before the batch is not supported");
                            }
                            let mut it = dims.iter();
                            (0..r)
                                .map(|i| if axes.contains(&i) { 1 } else { *it.next().unwrap_or(&1) })
                                .collect()
                        }
                    }
                };
                if target.first() != Some(&1) {
                    candle_core::bail!(
                        "the target shape {target:?} does not keep the batch dimension first (a leading 1 stands for the batch)"
                    );
                }
                Op::Reshape {
                    shape: target[1..].to_vec(),
                }
            }
            "Transpose" => {
                let rank = map_dims(0)?.len();
                let perm: Vec<usize> = match attr_ints(n, "perm") {
                    Some(p) => p.iter().map(|&a| axis(a, rank)).collect::<candle_core::Result<_>>()?,
                    None => (0..rank).rev().collect(),
                };
                if perm.first() != Some(&0) {
                    candle_core::bail!("a transpose that moves the batch dimension ({perm:?}) is not supported");
                }
                Op::Transpose { perm }
            }
            "Pad" => {
                let mode =
                    attr(n, "mode").map_or("constant".to_string(), |a| String::from_utf8_lossy(&a.s).to_string());
                if mode != "constant" {
                    candle_core::bail!("padding mode `{mode}` is not supported (only constant)");
                }
                let pads = match attr_ints(n, "pads") {
                    Some(p) => p,
                    None => self.ints(n, 1)?.unwrap_or_default(),
                };
                let value = match self.get(n, 2)? {
                    Some((_, Val::Const(t, _))) => t.flatten_all()?.to_vec1::<f32>()?.first().copied().unwrap_or(0.0),
                    _ => attr_f(n, "value", 0.0),
                };
                let rank = map_dims(0)?.len();
                if pads.len() != 2 * rank || pads.iter().any(|&p| p < 0) || value != 0.0 {
                    candle_core::bail!("padding {pads:?} with {value} is not supported (zeros, not negative)");
                }
                if n.input.len() > 3 && !n.input[3].is_empty() {
                    candle_core::bail!("the `axes` input is not supported");
                }
                if pads[0] != 0 || pads[rank] != 0 {
                    candle_core::bail!("padding the batch dimension is not supported");
                }
                Op::Pad {
                    pads: (0..rank).map(|i| (pads[i] as usize, pads[i + rank] as usize)).collect(),
                }
            }
            "Dropout" | "Identity" => Op::Identity,
            "Split" => {
                let dims = map_dims(0)?;
                let a = axis(attr_i(n, "axis", 0), dims.len())?;
                if a == 0 {
                    candle_core::bail!("splitting the batch dimension is not supported");
                }
                let parts = n.output.len();
                let sizes: Vec<usize> = match attr_ints(n, "split").or(self.ints(n, 1)?) {
                    Some(s) if !s.is_empty() => s.iter().map(|&v| v as usize).collect(),
                    _ => {
                        let k = attr_i(n, "num_outputs", parts as i64).max(1) as usize;
                        let each = dims[a].div_ceil(k);
                        (0..k).map(|i| each.min(dims[a].saturating_sub(i * each))).collect()
                    }
                };
                if sizes.iter().sum::<usize>() != dims[a] {
                    candle_core::bail!("split sizes {sizes:?} do not add up to {}", dims[a]);
                }
                Op::Split { axis: a, sizes }
            }
            "Slice" => {
                let dims = map_dims(0)?;
                let (starts, ends) = match (attr_ints(n, "starts"), attr_ints(n, "ends")) {
                    (Some(s), Some(e)) => (s, e),
                    _ => (
                        self.ints(n, 1)?.unwrap_or_default(),
                        self.ints(n, 2)?.unwrap_or_default(),
                    ),
                };
                let axes = match attr_ints(n, "axes") {
                    Some(a) => a,
                    None => self.ints(n, 3)?.unwrap_or_else(|| (0..starts.len() as i64).collect()),
                };
                let steps = self.ints(n, 4)?.unwrap_or_else(|| vec![1; starts.len()]);
                if ends.len() != starts.len() || axes.len() != starts.len() {
                    candle_core::bail!("`starts`, `ends` and `axes` differ in length");
                }
                let mut ranges = Vec::new();
                for i in 0..starts.len() {
                    let a = axis(axes[i], dims.len())?;
                    let d = dims[a] as i64;
                    if steps.get(i).copied().unwrap_or(1) != 1 {
                        candle_core::bail!("slices with a step other than 1 are not supported");
                    }
                    let c = |v: i64| if v < 0 { (v + d).clamp(0, d) } else { v.min(d) };
                    let (s, e) = (c(starts[i]), c(ends[i]));
                    if a == 0 {
                        if (s, e) != (0, d) {
                            candle_core::bail!("slicing the batch dimension is not supported");
                        }
                        continue;
                    }
                    ranges.push((a, s as usize, (e - s).max(0) as usize));
                }
                Op::Slice { ranges }
            }
            _ => return Ok(None),
        };
        Ok(Some(op))
    }

    /// Names the layers, finds the default CAM layer, and lists what each value is used for.
    fn finish(
        mut self,
        input: ValueId,
        output: ValueId,
        scopes: Vec<(Vec<String>, String)>,
        classes: usize,
    ) -> Result<Graph> {
        // Constants read by map ops.
        let used: HashSet<ValueId> = self.nodes.iter().flat_map(|n| n.inputs.iter().copied()).collect();
        let mut consts = Vec::new();
        for &id in &used {
            match &self.vals[id] {
                Val::Const(t, _) => consts.push((id, t.clone())),
                Val::Ints(s, v) => consts.push((
                    id,
                    Tensor::from_vec(
                        v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                        s.as_slice(),
                        &Device::Cpu,
                    )?,
                )),
                Val::Map(_) => {}
            }
        }
        consts.sort_by_key(|(id, _)| *id);
        // Only nodes that lead to the output run.
        let mut live = vec![false; self.vals.len()];
        live[output] = true;
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|&o| live[o]) {
                keep[i] = true;
                for &v in &n.inputs {
                    live[v] = true;
                }
            }
        }
        let mut nodes = Vec::new();
        let mut node_scopes = Vec::new();
        for ((n, k), s) in self.nodes.drain(..).zip(keep).zip(scopes) {
            if k {
                nodes.push(n);
                node_scopes.push(s);
            }
        }
        if !live[input] {
            return Err(Error::at(&self.path, "the graph's output does not depend on its input"));
        }
        // Scopes with other scopes inside: containers (a block, a Sequential), not leaves.
        let containers: HashSet<String> = node_scopes
            .iter()
            .flat_map(|(s, _)| s.iter().take(s.len().saturating_sub(1)).cloned())
            .collect();
        // Layer names: the module path, else the node's name; repeats get `_1`, `_2`, ...
        let mut layers = Vec::new();
        let mut weights: Vec<(String, Vec<usize>)> = Vec::new();
        let mut seen_w = HashSet::new();
        for (n, s) in nodes.iter_mut().zip(&node_scopes) {
            for p in n.params.iter().flatten() {
                if let Param::Weight(name, shape) = p {
                    if seen_w.insert(name.clone()) {
                        weights.push((name.clone(), shape.clone()));
                    }
                }
            }
            let Val::Map(t) = &self.vals[n.outputs[0]] else {
                continue;
            };
            let shape = t.dims()[1..].to_vec();
            if shape.len() != 1 && shape.len() != 3 {
                continue;
            }
            // A convolution or linear layer is named after its weight's module where the
            // weight says (`layer1.0.conv1.weight`: the dynamo exporter names a convolution
            // with its batch norm folded in after the batch norm); an op written in a
            // module's `forward` (an addition in a block) after the module and the op.
            let (scopes, op_name) = s;
            let from_weight = match (&n.op, n.params.first()) {
                (exec::Op::Conv { .. } | exec::Op::Gemm { .. }, Some(Some(Param::Weight(w, _)))) => {
                    w.strip_suffix(".weight").map(str::to_string)
                }
                _ => None,
            };
            let base = match (from_weight, scopes.last()) {
                (Some(w), _) => w,
                (None, Some(last)) if containers.contains(last) => format!("{last}.{op_name}"),
                (None, Some(last)) => last.clone(),
                (None, None) => op_name.clone(),
            };
            let mut name = base.clone();
            let mut k = 1;
            while self.layers_seen.contains(&name) {
                name = format!("{base}_{k}");
                k += 1;
            }
            self.layers_seen.insert(name.clone());
            n.names.push(name.clone());
            let own: Vec<(String, Vec<usize>)> = n
                .params
                .iter()
                .flatten()
                .filter_map(|p| match p {
                    Param::Weight(w, s) => Some((w.clone(), s.clone())),
                    Param::Const(_) => None,
                })
                .collect();
            layers.push(Layer {
                name,
                kind: n.op.kind(),
                shape,
                weights: own,
                group: None,
                residual: false,
                scopes: scopes.clone(),
            });
        }
        // Module scopes name the last layer inside them (`layer4` = the output of its last block).
        let mut last_in: HashMap<String, usize> = HashMap::new();
        for (i, (s, _)) in node_scopes.iter().enumerate() {
            if nodes[i].names.is_empty() {
                continue;
            }
            for scope in s {
                last_in.insert(scope.clone(), i);
            }
        }
        let mut aliases: Vec<(usize, String)> = last_in
            .into_iter()
            .filter(|(s, _)| !self.layers_seen.contains(s))
            .map(|(s, i)| (i, s))
            .collect();
        // Outer scopes after inner ones (`layer4.1` before `layer4`).
        aliases.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.len().cmp(&a.1.len())).then(a.1.cmp(&b.1)));
        let mut with_alias = Vec::new();
        let mut li = 0;
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.names.is_empty() {
                continue;
            }
            with_alias.push(layers[li].clone());
            li += 1;
            for (_, s) in aliases.iter().filter(|(j, _)| *j == i) {
                n.names.push(s.clone());
                let base = with_alias.last().expect("just pushed").clone();
                let upto = base
                    .scopes
                    .iter()
                    .position(|x| x == s)
                    .map_or(base.scopes.len(), |p| p + 1);
                with_alias.push(Layer {
                    name: s.clone(),
                    kind: LayerKind::Block,
                    weights: Vec::new(),
                    scopes: base.scopes[..upto].to_vec(),
                    ..base
                });
            }
        }
        let mut layers = with_alias;
        // A module adds its input back when both operands of an addition inside it depend
        // on the same map made outside it (directly, or through a projection).
        let mut made_by: HashMap<ValueId, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for &o in &n.outputs {
                made_by.insert(o, i);
            }
        }
        let is_const: HashSet<ValueId> = consts.iter().map(|(id, _)| *id).collect();
        let inside = |i: usize, scope: &str| node_scopes[i].0.iter().any(|x| x == scope);
        // The maps from outside `scope` that `v` is computed from.
        let entries = |v: ValueId, scope: &str| -> HashSet<ValueId> {
            let (mut out, mut seen, mut stack) = (HashSet::new(), HashSet::new(), vec![v]);
            while let Some(v) = stack.pop() {
                if !seen.insert(v) || is_const.contains(&v) {
                    continue;
                }
                match made_by.get(&v) {
                    Some(&p) if inside(p, scope) => stack.extend(nodes[p].inputs.iter().copied()),
                    _ => {
                        out.insert(v);
                    }
                }
            }
            out
        };
        let mut residual_scopes: HashSet<String> = HashSet::new();
        for (i, (s, _)) in node_scopes.iter().enumerate() {
            let n = &nodes[i];
            if !matches!(&n.op, exec::Op::Binary(k) if k == "Add") || n.inputs.iter().any(|v| is_const.contains(v)) {
                continue;
            }
            for scope in s {
                let (a, b) = (entries(n.inputs[0], scope), entries(n.inputs[1], scope));
                if !a.is_disjoint(&b) {
                    residual_scopes.insert(scope.clone());
                }
            }
        }
        for l in layers.iter_mut().filter(|l| l.kind == LayerKind::Block) {
            l.residual = residual_scopes.contains(&l.name);
        }
        // Stages: the modules at the shallowest depth where none holds over half the layers.
        let total = layers.len();
        for depth in 1..=4 {
            let mut count: HashMap<&str, usize> = HashMap::new();
            for l in &layers {
                if let Some(g) = l.scopes.get(depth - 1) {
                    *count.entry(g.as_str()).or_default() += 1;
                }
            }
            if count.values().all(|&c| 2 * c <= total) {
                let groups: Vec<Option<String>> = layers
                    .iter()
                    .map(|l| {
                        let g = l.scopes.get(depth - 1)?;
                        (count[g.as_str()] > 1).then(|| g.clone())
                    })
                    .collect();
                for (l, g) in layers.iter_mut().zip(groups) {
                    l.group = g;
                }
                break;
            }
        }
        // Grad-CAM's default: the last spatial map (the outermost name it has).
        let cam_layer = nodes
            .iter()
            .rev()
            .find(|n| {
                !n.names.is_empty()
                    && matches!(&self.vals[n.outputs[0]], Val::Map(t) if t.rank() == 4 && t.dim(2).unwrap_or(1) * t.dim(3).unwrap_or(1) > 1)
            })
            .and_then(|n| n.names.last().cloned())
            .ok_or_else(|| Error::at(&self.path, "the graph has no spatial feature map"))?;
        let mut last_use = vec![usize::MAX; self.vals.len()];
        for (i, n) in nodes.iter().enumerate() {
            for &v in &n.inputs {
                last_use[v] = i;
            }
        }
        // Constants stay for the next pass.
        for (id, _) in &consts {
            last_use[*id] = usize::MAX;
        }
        Ok(Graph {
            path: self.path,
            nodes,
            consts,
            values: self.vals.len(),
            input,
            output,
            last_use,
            layers,
            weights,
            classes,
            cam_layer,
        })
    }
}

/// Integer ops of shape computations, folded.
fn fold_ints(n: &NodeProto, inputs: &[Val]) -> std::result::Result<Vec<Val>, String> {
    let ints = |i: usize| -> std::result::Result<(Vec<usize>, Vec<i64>), String> {
        match inputs.get(i) {
            Some(Val::Ints(s, v)) => Ok((s.clone(), v.clone())),
            _ => Err(format!("input {i} is missing")),
        }
    };
    let (s0, v0) = ints(0)?;
    let one = |s: Vec<usize>, v: Vec<i64>| Ok(vec![Val::Ints(s, v)]);
    match n.op_type.as_str() {
        "Cast" | "Identity" => one(s0, v0),
        "Gather" => {
            let (si, vi) = ints(1)?;
            if s0.len() > 1 {
                return Err("gathering from a multi-dimensional integer tensor is not supported".into());
            }
            let len = v0.len() as i64;
            let out: Vec<i64> = vi
                .iter()
                .map(|&i| {
                    let i = if i < 0 { i + len } else { i };
                    v0.get(i as usize)
                        .copied()
                        .ok_or_else(|| format!("index {i} out of range"))
                })
                .collect::<std::result::Result<_, _>>()?;
            one(si, out)
        }
        "Unsqueeze" | "Squeeze" | "Flatten" => {
            let s = if n.op_type == "Unsqueeze" && s0.is_empty() {
                vec![1]
            } else {
                vec![v0.len()]
            };
            one(s, v0)
        }
        "Reshape" => {
            let t = ints(1)?.1;
            let shape = reshape_target(&s0, &t, false)?;
            one(shape, v0)
        }
        "Transpose" => {
            if s0.len() != 2 {
                return Err("transposing integer tensors of other than two dimensions is not supported".into());
            }
            let (r, c) = (s0[0], s0[1]);
            let v: Vec<i64> = (0..c)
                .flat_map(|j| (0..r).map(move |i| (i, j)))
                .map(|(i, j)| v0[i * c + j])
                .collect();
            one(vec![c, r], v)
        }
        "Concat" => {
            let mut v = Vec::new();
            for i in 0..inputs.len() {
                v.extend(ints(i)?.1);
            }
            one(vec![v.len()], v)
        }
        "Slice" => {
            let starts = ints(1)?.1;
            let ends = ints(2)?.1;
            let axes = inputs
                .get(3)
                .map(|_| ints(3))
                .transpose()?
                .map(|a| a.1)
                .unwrap_or(vec![0]);
            let steps = inputs
                .get(4)
                .map(|_| ints(4))
                .transpose()?
                .map(|a| a.1)
                .unwrap_or(vec![1]);
            if starts.len() != 1 || ends.len() != 1 || axes.first().is_some_and(|&a| a != 0 && a != -(s0.len() as i64))
            {
                return Err("slicing integer tensors other than along their first axis is not supported".into());
            }
            let rows = s0.first().copied().unwrap_or(1) as i64;
            let row: usize = s0.iter().skip(1).product();
            let step = steps.first().copied().unwrap_or(1);
            if step == 0 {
                return Err("a slice step of 0".into());
            }
            let norm = |v: i64, lo: i64, hi: i64| {
                if v < 0 {
                    (v + rows).clamp(lo, hi)
                } else {
                    v.clamp(lo, hi)
                }
            };
            let idx: Vec<i64> = if step > 0 {
                let (s, e) = (norm(starts[0], 0, rows), norm(ends[0], 0, rows));
                (s..e).step_by(step as usize).collect()
            } else {
                let (s, e) = (norm(starts[0], -1, rows - 1), norm(ends[0], -1, rows - 1));
                let mut v = Vec::new();
                let mut i = s;
                while i > e {
                    v.push(i);
                    i += step;
                }
                v
            };
            let mut out = Vec::new();
            for &i in &idx {
                out.extend_from_slice(&v0[i as usize * row..(i as usize + 1) * row]);
            }
            let mut shape = s0.clone();
            if shape.is_empty() {
                shape.push(idx.len());
            } else {
                shape[0] = idx.len();
            }
            one(shape, out)
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (s1, v1) = ints(1)?;
            if v0.len() != v1.len() && v0.len() != 1 && v1.len() != 1 {
                return Err(format!(
                    "integer tensors of {} and {} values do not broadcast",
                    v0.len(),
                    v1.len()
                ));
            }
            let (s, len) = if v0.len() >= v1.len() {
                (s0, v0.len())
            } else {
                (s1, v1.len())
            };
            let at = |v: &Vec<i64>, i: usize| if v.len() == 1 { v[0] } else { v[i] };
            let out: Vec<i64> = (0..len)
                .map(|i| {
                    let (a, b) = (at(&v0, i), at(&v1, i));
                    match n.op_type.as_str() {
                        "Add" => Ok(a + b),
                        "Sub" => Ok(a - b),
                        "Mul" => Ok(a * b),
                        _ if b == 0 => Err("division by zero in a shape computation".to_string()),
                        _ => Ok(a.div_euclid(b)),
                    }
                })
                .collect::<std::result::Result<_, _>>()?;
            one(s, out)
        }
        op => Err(format!(
            "`{op}` on integer tensors (a shape computation) is not supported"
        )),
    }
}

/// A node on constants only (weights reshaped or scaled, say), computed once here.
fn fold_consts(n: &NodeProto, inputs: &[Val]) -> std::result::Result<Tensor, String> {
    let t = |i: usize| -> std::result::Result<Tensor, String> {
        match inputs.get(i) {
            Some(Val::Const(t, _)) => Ok(t.clone()),
            Some(Val::Ints(s, v)) => Tensor::from_vec(
                v.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                s.as_slice(),
                &Device::Cpu,
            )
            .map_err(|e| e.to_string()),
            _ => Err(format!("input {i} is missing")),
        }
    };
    let ints = |i: usize| -> Option<Vec<i64>> {
        match inputs.get(i) {
            Some(Val::Ints(_, v)) => Some(v.clone()),
            _ => None,
        }
    };
    let e = |e: candle_core::Error| e.to_string();
    let x = t(0)?;
    let dims = x.dims().to_vec();
    Ok(match n.op_type.as_str() {
        "Identity" | "Dropout" | "Cast" => x,
        "Sqrt" => x.sqrt().map_err(e)?,
        "Add" | "Sub" | "Mul" | "Div" => {
            let b = t(1)?;
            match n.op_type.as_str() {
                "Add" => x.broadcast_add(&b),
                "Sub" => x.broadcast_sub(&b),
                "Mul" => x.broadcast_mul(&b),
                _ => x.broadcast_div(&b),
            }
            .map_err(e)?
        }
        "Reshape" => {
            let target = ints(1).ok_or("the target shape must be integers")?;
            x.reshape(reshape_target(&dims, &target, false)?).map_err(e)?
        }
        "Unsqueeze" | "Squeeze" | "Flatten" => {
            let axes = attr_ints(n, "axes").or(ints(1)).unwrap_or_default();
            let shape: Vec<usize> = match n.op_type.as_str() {
                "Flatten" => {
                    let a = attr_i(n, "axis", 1).rem_euclid(dims.len().max(1) as i64 + 1) as usize;
                    vec![dims[..a].iter().product(), dims[a..].iter().product()]
                }
                "Squeeze" if dims.is_empty() => dims.clone(),
                "Squeeze" => dims
                    .iter()
                    .enumerate()
                    .filter(|(i, &d)| {
                        !(d == 1
                            && (axes.is_empty()
                                || axes.iter().any(|&a| a.rem_euclid(dims.len() as i64) as usize == *i)))
                    })
                    .map(|(_, &d)| d)
                    .collect(),
                _ => {
                    let r = dims.len() + axes.len();
                    let axes: Vec<usize> = axes.iter().map(|&a| a.rem_euclid(r as i64) as usize).collect();
                    let mut it = dims.iter();
                    (0..r)
                        .map(|i| if axes.contains(&i) { 1 } else { *it.next().unwrap_or(&1) })
                        .collect()
                }
            };
            x.reshape(shape).map_err(e)?
        }
        "Transpose" => {
            let perm: Vec<usize> = match attr_ints(n, "perm") {
                Some(p) => p.iter().map(|&a| a.rem_euclid(dims.len() as i64) as usize).collect(),
                None => (0..dims.len()).rev().collect(),
            };
            x.permute(perm).map_err(e)?.contiguous().map_err(e)?
        }
        op => return Err(format!("`{op}` on constants only is not supported")),
    })
}

/// ONNX's `Reshape` target for an input of `dims`: `0` copies the input's dimension (unless
/// `allowzero`), one `-1` takes what is left; the element count must stay.
fn reshape_target(dims: &[usize], target: &[i64], allowzero: bool) -> std::result::Result<Vec<usize>, String> {
    let bad = || format!("cannot reshape {dims:?} to {target:?}");
    let total: usize = dims.iter().product();
    let mut out: Vec<i64> = target
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v == 0 && !allowzero {
                dims.get(i).map_or(0, |&d| d as i64)
            } else {
                v
            }
        })
        .collect();
    if let Some(p) = out.iter().position(|&v| v == -1) {
        let known: i64 = out.iter().filter(|&&v| v >= 0).product();
        if known == 0 || total as i64 % known != 0 {
            return Err(bad());
        }
        out[p] = total as i64 / known;
    }
    if out.iter().any(|&v| v < 0) {
        return Err(bad());
    }
    let out: Vec<usize> = out.iter().map(|&v| v as usize).collect();
    if out.iter().product::<usize>() != total {
        return Err(bad());
    }
    Ok(out)
}
