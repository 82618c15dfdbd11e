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

use super::{Architecture, InputSpec, LayerInfo, Model, Tap};
use crate::error::Result;
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
    drop(bytes);
    if let Some((_, a)) = KNOWN.lock().expect("not poisoned").iter().find(|(k, _)| *k == key) {
        return Ok(a);
    }
    let graph: &'static Graph = Box::leak(Box::new(Graph::load(path, spec, classes)?));
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
        let mut done = vec![false; g.nodes.len()];
        for (i, node) in g.nodes.iter().enumerate() {
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
}
