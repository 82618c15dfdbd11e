//! Runs the configured attribution methods for one model × image pair, for every target
//! class, through the cache. Methods that share a forward + backward pass get it from one
//! [`Ctx`] per target. Results are typed numbers and file paths; the pages word them.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::artifact::{Artifact, ClassRef};
use super::keys;
use crate::cache::{Cache, ENTRY};
use crate::config::{ImageConfig, ModelConfig, TargetSpec};
use crate::error::Result;
use crate::methods::{self, Ctx, MethodSpec, ModelInfo, Output};
use crate::models::{LayerInfo, LoadedModel};
use crate::plan;
use crate::render::attribution::{heatmap, overlay, prepare, Drawing};
use crate::render::colormap::Scale;
use crate::render::grid;
use crate::render::pictures::{layer_picture, weight_picture, LayerPicture, WeightPicture};

/// A class the methods explain, and why it was chosen.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub index: usize,
    pub name: String,
    /// `predicted`, `runner-up`, `label`, `listed`.
    pub roles: Vec<&'static str>,
    pub probability: f32,
}

/// One cell of the attribution matrix, as cached (paths start with [`ENTRY`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapCell {
    pub target: usize,
    pub heatmap: String,
    pub overlay: String,
    pub npy: String,
    /// Shape of the raw map.
    pub shape: Vec<usize>,
    pub drawing: Drawing,
    pub scale: Scale,
    /// Checks that come with the map (Integrated Gradients' completeness gap).
    pub metrics: BTreeMap<String, f64>,
}

/// A map method's row of the matrix: its cells follow the targets.
#[derive(Debug, Clone)]
pub struct MethodRow {
    /// Index into the model's methods.
    pub method: usize,
    pub slug: String,
    pub cells: Vec<MapCell>,
}

/// The gradient of one target's score at every layer.
#[derive(Debug, Clone)]
pub struct TargetLayers {
    pub target: TargetInfo,
    pub layers: Vec<LayerPicture>,
}

/// The loss's gradient at every weight tensor.
#[derive(Debug, Clone)]
pub struct WeightGradients {
    pub class: usize,
    /// Whether `class` is the image's label (else the predicted class).
    pub from_label: bool,
    pub tensors: Vec<WeightPicture>,
}

/// What the methods produced for one pair.
#[derive(Default)]
pub struct Explained {
    pub targets: Vec<TargetInfo>,
    pub rows: Vec<MethodRow>,
    pub activation_gradients: Vec<TargetLayers>,
    pub weight_gradients: Option<WeightGradients>,
    pub artifacts: Vec<Artifact>,
    /// Seconds spent per method (summed over targets), in list order; none if every
    /// result came from the cache.
    pub timings: Vec<(String, Option<f64>)>,
    /// Cache entries computed (not reused).
    pub computed: usize,
}

/// Resolves target specs against the class probabilities; a class chosen for several
/// reasons appears once, with all of them.
pub fn targets_for(specs: &[TargetSpec], probs: &[f32], classes: &[String], label: Option<usize>) -> Vec<TargetInfo> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let mut out: Vec<TargetInfo> = Vec::new();
    for spec in specs {
        let (index, role) = match spec {
            TargetSpec::Predicted => (order[0], "predicted"),
            TargetSpec::RunnerUp if order.len() > 1 => (order[1], "runner-up"),
            TargetSpec::RunnerUp => continue,
            TargetSpec::Label => match label {
                Some(l) => (l, "label"),
                None => continue,
            },
            TargetSpec::Class(k) => (*k, "listed"),
        };
        match out.iter_mut().find(|t| t.index == index) {
            Some(t) => {
                if !t.roles.contains(&role) {
                    t.roles.push(role)
                }
            }
            None => out.push(TargetInfo {
                index,
                name: classes[index].clone(),
                roles: vec![role],
                probability: probs[index],
            }),
        }
    }
    out
}

/// The class weight gradients are taken of: the label, else the prediction.
fn loss_class(probs: &[f32], classes: &[String], label: Option<usize>) -> usize {
    label.unwrap_or_else(|| targets_for(&[TargetSpec::Predicted], probs, classes, None)[0].index)
}

/// Every method entry key of a pair, given its class probabilities (for `cache gc`).
pub fn method_keys(mc: &ModelConfig, ic: &ImageConfig, layers: &[LayerInfo], fkey: &str, probs: &[f32]) -> Vec<String> {
    let label = ic.label_index(mc);
    let targets = targets_for(&mc.targets, probs, &mc.classes, label);
    let info = ModelInfo {
        arch: mc.arch,
        input: &mc.input,
        layers,
    };
    let mut keys = Vec::new();
    for method in &mc.methods {
        let params = method.params(&info);
        if method.per_target() {
            keys.extend(targets.iter().map(|t| keys::method(fkey, method, &params, t.index)));
        } else {
            keys.push(keys::method(
                fkey,
                method,
                &params,
                loss_class(probs, &mc.classes, label),
            ));
        }
    }
    keys
}

/// One method's result for one class, as cached (paths start with [`ENTRY`]). Read once
/// per entry and taken apart at once, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "lowercase")]
enum MethodData {
    /// `<class>.png`, `<class>-overlay.png`, `<class>.npy`.
    Map { cell: MapCell, artifact: Artifact },
    /// `<layer>.png/.npy` per layer.
    Layers {
        layers: Vec<LayerPicture>,
        artifacts: Vec<Artifact>,
    },
    /// `<layer>.png/.npy` per weight tensor.
    Weights {
        class: usize,
        tensors: Vec<WeightPicture>,
        artifacts: Vec<Artifact>,
    },
}

/// Where a method's files go in the site.
fn prefix_for(method: &MethodSpec, model: &str, image: &str, slug: &str, class: usize) -> String {
    match method.output() {
        methods::OutputKind::Map => plan::attribution_files(model, image, slug),
        methods::OutputKind::Layers => plan::activation_gradient_files(model, image, class),
        methods::OutputKind::Weights => plan::weight_gradient_files(model, image),
    }
}

/// The input as shown, for overlays.
struct Drawn<'a> {
    shown: &'a DynamicImage,
    input_hw: (usize, usize),
    zoom: u32,
}

/// Runs one method on a context and writes its arrays and pictures into `edir`.
fn compute_method(
    method: &MethodSpec,
    cx: &Ctx,
    params: &serde_json::Value,
    layers: &[LayerInfo],
    draw: &Drawn,
    edir: &Path,
) -> Result<MethodData> {
    let target = || Some(ClassRef::new(cx.target));
    Ok(match method.run(cx)? {
        Output::Map(map) => {
            let base = cx.target.to_string();
            let dims = map.data.dims().to_vec();
            let raw = map
                .data
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            let prepared = prepare(&raw, &dims, map.view, draw.input_hw);
            let heat = heatmap(&prepared, draw.zoom);
            let over = overlay(draw.shown, &heat);
            grid::save_png(&heat, &edir.join(format!("{base}.png")))?;
            grid::save_png(&over, &edir.join(format!("{base}-overlay.png")))?;
            crate::data::npy::write(&map.data, &edir.join(format!("{base}.npy")))?;
            let (png, over, npy) = (
                format!("{ENTRY}{base}.png"),
                format!("{ENTRY}{base}-overlay.png"),
                format!("{ENTRY}{base}.npy"),
            );
            MethodData::Map {
                cell: MapCell {
                    target: cx.target,
                    heatmap: png.clone(),
                    overlay: over.clone(),
                    npy: npy.clone(),
                    shape: dims.clone(),
                    drawing: prepared.drawing,
                    scale: prepared.scale,
                    metrics: map.metrics.clone(),
                },
                artifact: Artifact {
                    kind: "attribution".into(),
                    method: Some(method.name().to_string()),
                    target: target(),
                    layer: map.layer.clone(),
                    params: Some(params.clone()),
                    png: Some(png),
                    overlay: Some(over),
                    npy: Some(npy),
                    shape: dims,
                    metrics: (!map.metrics.is_empty()).then_some(map.metrics),
                    ..Default::default()
                },
            }
        }
        Output::Layers(grads) => {
            let mut pictures = Vec::new();
            let mut artifacts = Vec::new();
            for (name, g) in &grads {
                let Some(info) = layers.iter().find(|l| &l.name == name) else {
                    continue;
                };
                if let Some(v) = layer_picture(g, info, name, edir)? {
                    artifacts.push(Artifact {
                        kind: "activation-gradient".into(),
                        method: Some(method.name().to_string()),
                        target: target(),
                        layer: Some(name.clone()),
                        png: Some(v.png.clone()),
                        npy: Some(v.npy.clone()),
                        shape: g.dims().to_vec(),
                        ..Default::default()
                    });
                    pictures.push(v);
                }
            }
            MethodData::Layers {
                layers: pictures,
                artifacts,
            }
        }
        Output::Weights { class, grads } => {
            let mut tensors = Vec::new();
            let mut artifacts = Vec::new();
            for (tensor, g) in &grads {
                let Some(info) = layers.iter().find(|l| l.weight.as_deref() == Some(tensor.as_str())) else {
                    continue;
                };
                if let Some(p) = weight_picture(g, info, tensor, &info.name, edir)? {
                    artifacts.push(Artifact {
                        kind: "weight-gradient".into(),
                        method: Some(method.name().to_string()),
                        target: Some(ClassRef::new(class)),
                        layer: Some(info.name.clone()),
                        png: Some(p.png.clone()),
                        npy: Some(p.npy.clone()),
                        shape: p.shape.clone(),
                        ..Default::default()
                    });
                    tensors.push(p);
                }
            }
            MethodData::Weights {
                class,
                tensors,
                artifacts,
            }
        }
    })
}

/// One pair as the methods need it.
pub struct PairInput<'a> {
    pub mc: &'a ModelConfig,
    pub ic: &'a ImageConfig,
    pub model: &'a LoadedModel,
    /// The preprocessed input `(1, C, H, W)` and the picture it was made from.
    pub x: &'a Tensor,
    pub shown: &'a DynamicImage,
    pub probs: &'a [f32],
    /// The forward pass's cache key (method keys build on it).
    pub fkey: &'a str,
}

/// Runs (or takes from the cache) the `wanted` methods of one pair for every target and,
/// with a site folder, links their files into the pair's pages.
pub fn explain(p: &PairInput, cache: &Cache, wanted: &[bool], out: Option<&Path>) -> Result<Explained> {
    let (mc, ic) = (p.mc, p.ic);
    let layers = p.model.model.layers();
    let label = ic.label_index(mc);
    let targets = targets_for(&mc.targets, p.probs, &mc.classes, label);
    let loss_class = loss_class(p.probs, &mc.classes, label);
    let slugs = methods::slugs(&mc.methods);
    let info = ModelInfo {
        arch: mc.arch,
        input: &mc.input,
        layers,
    };
    let input_hw = (mc.input.height, mc.input.width);
    let draw = Drawn {
        shown: p.shown,
        input_hw,
        zoom: grid::zoom_for(input_hw.0, input_hw.1, 224),
    };
    let mut ex = Explained::default();
    let mut cells: Vec<Vec<MapCell>> = vec![Vec::new(); mc.methods.len()];
    let mut times: Vec<Option<f64>> = vec![None; mc.methods.len()];

    // Per target, then the target-independent weight gradients (of the loss class).
    let mut runs: Vec<(usize, bool)> = targets.iter().map(|t| (t.index, true)).collect();
    runs.push((loss_class, false));
    for (class, per_target) in runs {
        // One context per class, so methods computed together share its forward + backward pass.
        let cx = Ctx::new(p.model, mc.arch, &mc.input, p.x, class, loss_class);
        for (mi, method) in mc.methods.iter().enumerate() {
            if method.per_target() != per_target || !wanted.get(mi).copied().unwrap_or(false) {
                continue;
            }
            let params = method.params(&info);
            let key = keys::method(p.fkey, method, &params, class);
            let started = std::time::Instant::now();
            let stored = cache
                .get_or_put("method", &key, |edir| {
                    compute_method(method, &cx, &params, layers, &draw, edir)
                })
                .map_err(|e| {
                    e.context(format!(
                        "model `{}` × image `{}`, method `{}` ({}), class {} `{}`",
                        mc.id,
                        ic.id,
                        method.name(),
                        slugs[mi],
                        class,
                        mc.classes[class]
                    ))
                })?;
            if stored.fresh {
                *times[mi].get_or_insert(0.0) += started.elapsed().as_secs_f64();
                ex.computed += 1;
            }
            let prefix = prefix_for(method, &mc.id, &ic.id, &slugs[mi], class);
            if let Some(out) = out {
                stored.link_into(out, &prefix)?;
            }
            let complete = |a: Artifact| a.complete(&stored, &prefix, &mc.id, Some(&ic.id), &mc.classes);
            match stored.placed::<MethodData>(&prefix)? {
                MethodData::Map { cell, artifact } => {
                    cells[mi].push(cell);
                    ex.artifacts.push(complete(artifact));
                }
                MethodData::Layers {
                    layers: pictures,
                    artifacts,
                } => {
                    if let Some(t) = targets.iter().find(|t| t.index == class) {
                        ex.activation_gradients.push(TargetLayers {
                            target: t.clone(),
                            layers: pictures,
                        });
                    }
                    ex.artifacts.extend(artifacts.into_iter().map(complete));
                }
                MethodData::Weights {
                    class,
                    tensors,
                    artifacts,
                } => {
                    ex.weight_gradients = Some(WeightGradients {
                        class,
                        from_label: label.is_some(),
                        tensors,
                    });
                    ex.artifacts.extend(artifacts.into_iter().map(complete));
                }
            }
        }
    }

    for (mi, (method, cells)) in mc.methods.iter().zip(cells).enumerate() {
        if method.is_map() {
            ex.rows.push(MethodRow {
                method: mi,
                slug: slugs[mi].clone(),
                cells,
            });
        }
    }
    ex.targets = targets;
    ex.timings = slugs.into_iter().zip(times).collect();
    Ok(ex)
}
