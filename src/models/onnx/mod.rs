//! `arch: onnx`: a classifier exported to ONNX (`torch.onnx.export`, or any framework),
//! run on the crate's own ops with every method. The graph is read once per file and
//! configuration (`graph`), its layers named after the module paths the exporter records;
//! `OnnxModel` runs it with the weights of a `VarBuilder`, like every architecture.

pub mod exec;
pub mod graph;
pub mod proto;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::region::{self, Region};
use super::{Architecture, InputSpec, LayerInfo, Model, Tap};
use crate::error::Result;
use crate::ops::bias::Act;
use exec::Exec;
pub use graph::{Graph, OPERATORS};

/// The `Architecture` of an ONNX file for one input size and class count. Graphs are kept
/// for the process (the rest of the pipeline holds architectures as `&'static`), once per
/// file content, size and class count, so `serve`'s rebuilds reuse them.
pub fn architecture(path: &Path, spec: &InputSpec, classes: usize) -> Result<&'static Architecture> {
    type Key = (PathBuf, [u8; 32], usize, usize, usize, usize);
    static KNOWN: Mutex<Vec<(Key, &'static Architecture)>> = Mutex::new(Vec::new());
    let bytes = std::fs::read(path).map_err(|e| crate::error::Error::io(path, e))?;
    let key: Key = (
        path.to_path_buf(),
        *blake3::hash(&bytes).as_bytes(),
        spec.channels,
        spec.height,
        spec.width,
        classes,
    );
    if let Some((_, a)) = KNOWN.lock().expect("not poisoned").iter().find(|(k, _)| *k == key) {
        return Ok(a);
    }
    let graph: &'static Graph = Box::leak(Box::new(Graph::load(path, &bytes, spec, classes)?));
    let arch: &'static Architecture = Box::leak(Box::new(Architecture {
        id: "onnx",
        summary: "a network read from an ONNX file",
        gradcam_layer: Box::leak(graph.cam_layer.clone().into_boxed_str()),
        randomisation: &[],
        unit_layers: &[],
        check_input: |_| Ok(()),
        tensors: |_, _| Vec::new(),
        build: |_, _, _| candle_core::bail!("an ONNX model is built from its graph"),
        graph: Some(graph),
    }));
    KNOWN.lock().expect("not poisoned").push((key, arch));
    Ok(arch)
}

/// The weight tensors a graph reads, with their shapes.
pub fn tensors(graph: &Graph) -> super::layer::Tensors {
    graph.weights.clone()
}

/// A graph with its weights, ready to run.
pub struct OnnxModel {
    graph: &'static Graph,
    execs: Vec<Exec>,
    consts: Vec<(usize, Tensor)>,
    layers: Vec<LayerInfo>,
    /// Node `i`'s output feeds only node `j`, an activation that can run inside `i`.
    fuse: Vec<Option<usize>>,
}

pub fn build(graph: &'static Graph, vb: VarBuilder) -> candle_core::Result<Box<dyn Model>> {
    let dtype = vb.dtype();
    let missing = std::cell::RefCell::new(None);
    let execs = graph
        .nodes
        .iter()
        .map(|n| {
            let w = |p: &graph::Param| -> Tensor {
                match p {
                    graph::Param::Const(t) => exec::cast(t, dtype).unwrap_or_else(|_| t.clone()),
                    graph::Param::Weight(name, shape) => match vb.get(shape.as_slice(), name) {
                        Ok(t) => t,
                        Err(e) => {
                            missing.borrow_mut().get_or_insert(format!("weight `{name}`: {e}"));
                            Tensor::zeros(shape.as_slice(), dtype, &candle_core::Device::Cpu).expect("zeros")
                        }
                    },
                }
            };
            Exec::new(&n.op, &n.params, w)
                .map_err(|e| candle_core::Error::Msg(format!("node `{}` ({}): {e}", n.onnx, n.op_type)))
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    if let Some(m) = missing.into_inner() {
        candle_core::bail!("{m}");
    }
    let consts = graph
        .consts
        .iter()
        .map(|(id, t)| Ok((*id, exec::cast(t, dtype)?)))
        .collect::<candle_core::Result<_>>()?;
    let layers = graph
        .layers
        .iter()
        .map(|l| {
            let mut info = LayerInfo::new(l.name.clone(), l.kind, l.shape.clone());
            // A batch norm's statistics are not parameters: its scale and shift are.
            let counted = if l.kind == super::LayerKind::BatchNorm {
                2
            } else {
                l.weights.len()
            };
            info.parameters = l
                .weights
                .iter()
                .take(counted)
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            info.tensors = l.weights.iter().map(|(n, _)| n.clone()).collect();
            info.group = l.group.clone();
            info.residual = l.residual;
            if matches!(l.kind, super::LayerKind::Conv | super::LayerKind::Linear) {
                info.weight = l.weights.first().map(|(n, _)| n.clone());
            }
            info
        })
        .collect();
    // Readers of each value.
    let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for &v in &n.inputs {
            readers.entry(v).or_default().push(i);
        }
    }
    let fuse = graph
        .nodes
        .iter()
        .map(|n| {
            let fusable = match &n.op {
                exec::Op::Conv { .. } => true,
                exec::Op::Binary(k) => k == "Add",
                _ => false,
            };
            let out = n.outputs[0];
            if !fusable || out == graph.output || n.outputs.len() != 1 {
                return None;
            }
            match readers.get(&out).map(|r| r.as_slice()) {
                Some(&[j]) => {
                    let act = graph.nodes[j].op.act(false)?;
                    // add + ReLU6 has no fused op.
                    let ok = matches!(n.op, exec::Op::Conv { .. }) || act == crate::ops::bias::Act::Relu;
                    ok.then_some(j)
                }
                _ => None,
            }
        })
        .collect();
    Ok(Box::new(OnnxModel {
        graph,
        execs,
        consts,
        layers,
        fuse,
    }))
}

impl Model for OnnxModel {
    fn arch(&self) -> &'static str {
        "onnx"
    }

    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    fn num_classes(&self) -> usize {
        self.graph.classes
    }

    fn forward(&self, x: &Tensor, tap: &mut Tap) -> candle_core::Result<Tensor> {
        let g = self.graph;
        let mut vals: Vec<Option<Tensor>> = vec![None; g.values];
        for (id, t) in &self.consts {
            vals[*id] = Some(t.clone());
        }
        vals[g.input] = Some(x.clone());
        self.run_from(0, vals, vec![false; g.nodes.len()], tap)
    }

    /// Occlusion's copies: while the graph is convolutions, activations, batch norms,
    /// max-pools of ReLU outputs and additions, each copy is computed only over the box its
    /// patch reaches (`models::region`); from the first other node on, as full maps.
    fn forward_patched(&self, x: &Tensor, patches: &Tensor, origins: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        if !region::supported(x) {
            return self.forward(&region::copies(x, patches, origins)?, &mut Tap::default());
        }
        let g = self.graph;
        let mut regions: Vec<Option<(Region, bool)>> = (0..g.values).map(|_| None).collect();
        regions[g.input] = Some((Region::new(x, patches, origins)?, false));
        let mut done = vec![false; g.nodes.len()];
        let mut start = g.nodes.len();
        for (i, node) in g.nodes.iter().enumerate() {
            if done[i] {
                continue;
            }
            match self.region_step(i, &regions, &mut done)? {
                Some((out, r)) => {
                    let full = r.0.is_full()?;
                    regions[out] = Some(r);
                    for &v in &node.inputs {
                        if g.last_use[v] == i {
                            regions[v] = None;
                        }
                    }
                    if full {
                        start = i + 1;
                        break;
                    }
                }
                None => {
                    start = i;
                    break;
                }
            }
        }
        // Every map still needed, whole, then the rest of the graph.
        let mut vals: Vec<Option<Tensor>> = vec![None; g.values];
        for (id, t) in &self.consts {
            vals[*id] = Some(t.clone());
        }
        for (id, r) in regions.into_iter().enumerate() {
            if let Some((r, _)) = r {
                vals[id] = Some(r.into_full()?);
            }
        }
        self.run_from(start, vals, done, &mut Tap::default())
    }

    fn patched_batch(&self, batch: usize) -> usize {
        region::patched_batch(batch)
    }
}

impl OnnxModel {
    /// Runs nodes `start..` (skipping those `done`) on the values computed so far.
    fn run_from(
        &self,
        start: usize,
        mut vals: Vec<Option<Tensor>>,
        mut done: Vec<bool>,
        tap: &mut Tap,
    ) -> candle_core::Result<Tensor> {
        let g = self.graph;
        for (i, node) in g.nodes.iter().enumerate().skip(start) {
            if done[i] {
                continue;
            }
            let ins: Vec<Tensor> = node
                .inputs
                .iter()
                .map(|&v| {
                    vals[v].clone().ok_or_else(|| {
                        candle_core::Error::Msg(format!("node `{}`: an input was not computed", node.onnx))
                    })
                })
                .collect::<candle_core::Result<_>>()?;
            let fused = self.fuse[i].filter(|_| !node.names.iter().any(|n| tap.touches(n)));
            let (outs, names, out_ids) = match fused {
                Some(j) => {
                    done[j] = true;
                    let act = g.nodes[j].op.act(tap.guided);
                    let y = self.execs[i].run_act(&ins, tap, act)?;
                    (y, &g.nodes[j].names, &g.nodes[j].outputs)
                }
                None => (self.execs[i].run(&ins, tap)?, &node.names, &node.outputs),
            };
            for (k, t) in outs.into_iter().enumerate() {
                let mut t = t;
                if k == 0 {
                    for n in names {
                        t = tap.at(n, t)?;
                    }
                }
                vals[out_ids[k]] = Some(t);
            }
            for &v in &node.inputs {
                if g.last_use[v] == i {
                    vals[v] = None;
                }
            }
        }
        vals[g.output]
            .take()
            .ok_or_else(|| candle_core::Error::Msg("the graph's output was not computed".into()))
    }

    /// Node `i` on regions, when all its inputs are regions and the op has a region form:
    /// the value it writes and its region, with whether that map is never negative (a max-pool
    /// pads boxes with zeros, right only then). `None`: the node needs whole maps.
    fn region_step(
        &self,
        i: usize,
        regions: &[Option<(Region, bool)>],
        done: &mut [bool],
    ) -> candle_core::Result<Option<(usize, (Region, bool))>> {
        let g = self.graph;
        let node = &g.nodes[i];
        let Some(ins) = node
            .inputs
            .iter()
            .map(|&v| regions[v].as_ref())
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(None);
        };
        if node.outputs.len() != 1 {
            return Ok(None);
        }
        let fused = self.fuse[i];
        let act = fused.and_then(|j| g.nodes[j].op.act(false));
        let r = match (&self.execs[i], &node.op) {
            (Exec::Conv(c), _) => (ins[0].0.conv(c, act.unwrap_or(Act::Identity))?, act.is_some()),
            (Exec::BatchNorm(_), _) => (
                ins[0].0.map(|t| {
                    Ok(self.execs[i]
                        .run(std::slice::from_ref(t), &mut Tap::default())?
                        .remove(0))
                })?,
                false,
            ),
            (
                Exec::Other(_),
                exec::Op::MaxPool {
                    k,
                    stride,
                    pad,
                    ceil: false,
                },
            ) if ins[0].1 => (ins[0].0.max_pool_nonnegative(*k, *stride, *pad)?, true),
            (Exec::Other(exec::Op::Binary(kind)), _) if kind == "Add" && ins.len() == 2 => {
                let ((a, an), (b, bn)) = (ins[0], ins[1]);
                let (sa, sb) = (a.box_size()?, b.box_size()?);
                let sum = if sa.0 >= sb.0 && sa.1 >= sb.1 {
                    a.add(b)?
                } else if sb.0 >= sa.0 && sb.1 >= sa.1 {
                    b.add(a)?
                } else {
                    return Ok(None);
                };
                match act {
                    Some(_) => (sum.map(|t| crate::ops::relu(t, false))?, true),
                    None => (sum, *an && *bn),
                }
            }
            (
                Exec::Other(
                    op @ (exec::Op::Relu
                    | exec::Op::Clip { .. }
                    | exec::Op::Sigmoid
                    | exec::Op::HardSwish
                    | exec::Op::HardSigmoid { .. }),
                ),
                _,
            ) => {
                let nonneg = matches!(op, exec::Op::Relu | exec::Op::Sigmoid | exec::Op::HardSigmoid { .. })
                    || matches!(op, exec::Op::Clip { lo, .. } if *lo >= 0.0);
                (
                    ins[0].0.map(|t| {
                        Ok(self.execs[i]
                            .run(std::slice::from_ref(t), &mut Tap::default())?
                            .remove(0))
                    })?,
                    nonneg,
                )
            }
            (Exec::Other(exec::Op::Identity), _) => (ins[0].0.map(|t| Ok(t.clone()))?, ins[0].1),
            _ => return Ok(None),
        };
        let out = match fused {
            Some(j) => {
                done[j] = true;
                g.nodes[j].outputs[0]
            }
            None => node.outputs[0],
        };
        Ok(Some((out, r)))
    }
}
