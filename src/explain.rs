//! Runs the configured attribution methods for one model × image pair, for every target
//! class, and writes their arrays and pictures. Methods that share a forward + backward pass
//! get it from one [`Ctx`] per target.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cache::{Cache, KeyHasher, ENTRY};

use crate::config::TargetSpec;
use crate::error::Result;
use crate::methods::{Ctx, MethodSpec, Output};
use crate::models::LayerInfo;
use crate::plan::Pair;
use crate::render::attribution::{heatmap, overlay, prepare};
use crate::render::grid;
use crate::site::{colorbar_name, layer_picture, pct, weight_picture, write_npy, Artifact, ClassRef, Site};

/// A class the methods explain, and why it was chosen.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub index: usize,
    pub name: String,
    /// `predicted`, `runner-up`, `label`, `listed`.
    pub roles: Vec<&'static str>,
    pub probability: f32,
}

/// What the methods produced for one pair, ready for the pages.
#[derive(Default)]
pub struct Explained {
    pub targets: Vec<TargetInfo>,
    /// One row per map method: its cells follow `targets`.
    pub rows: Vec<Value>,
    /// Per target: the gradient of its score at every layer.
    pub activation_gradients: Vec<Value>,
    /// The loss's gradient at every weight tensor.
    pub weight_gradients: Option<Value>,
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

/// File-name-safe, unique names for the methods of a list (`gradcam++` → `gradcam-pp`;
/// a method listed twice gets `-2`).
pub fn method_slugs(methods: &[MethodSpec]) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    methods
        .iter()
        .map(|m| {
            let n = seen.entry(m.id()).or_insert(0);
            *n += 1;
            let base = m.id().replace("++", "-pp");
            if *n == 1 {
                base
            } else {
                format!("{base}-{n}")
            }
        })
        .collect()
}

fn params_text(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} = {}", v.to_string().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The cache key of one method's result for one class: the forward pass's key (weights,
/// image, input settings), the method and its parameters as applied, and the class.
fn method_key(fkey: &str, method: &MethodSpec, params: &Value, class: usize) -> String {
    KeyHasher::new("method")
        .field("forward", fkey)
        .field("method", method.id())
        .field("params", params.to_string())
        .field("class", class.to_string())
        .finish()
}

/// The class weight gradients are taken of: the label, else the prediction.
fn loss_class(probs: &[f32], classes: &[String], label: Option<usize>) -> usize {
    label.unwrap_or_else(|| targets_for(&[TargetSpec::Predicted], probs, classes, None)[0].index)
}

/// Every method entry key of a pair, given its class probabilities (for `cache gc`).
pub fn method_keys(site: &Site, p: Pair, fkey: &str, probs: &[f32]) -> Vec<String> {
    let mc = &site.config.models[p.model];
    let label = site.config.images[p.image].label_index(mc);
    let targets = targets_for(&mc.targets, probs, &mc.classes, label);
    let mut keys = Vec::new();
    for method in &mc.methods {
        let params = method.params(mc.arch, &mc.input);
        if method.per_target() {
            keys.extend(targets.iter().map(|t| method_key(fkey, method, &params, t.index)));
        } else {
            keys.push(method_key(fkey, method, &params, loss_class(probs, &mc.classes, label)));
        }
    }
    keys
}

/// One method's result for one class, as cached (paths start with [`ENTRY`]).
#[derive(Serialize, Deserialize)]
#[serde(tag = "output", rename_all = "lowercase")]
enum MethodData {
    /// `<class>.png`, `<class>-overlay.png`, `<class>.npy`.
    Map { cell: Value, artifact: Artifact },
    /// `<layer>.png/.npy` per layer.
    Layers {
        layers: Vec<Value>,
        artifacts: Vec<Artifact>,
    },
    /// `<layer>.png/.npy` per weight tensor.
    Weights {
        class: usize,
        tensors: Vec<Value>,
        artifacts: Vec<Artifact>,
    },
}

/// Where a method's files go in the site.
fn prefix_for(method: &MethodSpec, dir: &str, slug: &str, class: usize) -> String {
    if method.is_map() {
        format!("{dir}/attributions/{slug}")
    } else if method.per_target() {
        format!("{dir}/activation-gradients/{class}")
    } else {
        format!("{dir}/weight-gradients")
    }
}

struct Drawing<'a> {
    shown: &'a DynamicImage,
    input_hw: (usize, usize),
    zoom: u32,
}

/// Runs one method on a context and writes its arrays and pictures into `edir`.
fn compute_method(
    method: &MethodSpec,
    cx: &Ctx,
    params: &Value,
    layers: &[LayerInfo],
    draw: &Drawing,
    edir: &Path,
) -> Result<MethodData> {
    let target = || {
        Some(ClassRef {
            index: cx.target,
            name: String::new(),
        })
    };
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
            write_npy(&map.data, &edir.join(format!("{base}.npy")))?;
            let (lo, hi) = prepared.scale.range();
            let metrics: Vec<Value> = map
                .metrics
                .iter()
                .map(|(k, v)| {
                    let shown = if k == "completeness_gap" {
                        format!("{:.3}%", 100.0 * v)
                    } else {
                        format!("{v:.4}")
                    };
                    json!({"name": k.replace('_', " "), "value": shown})
                })
                .collect();
            let (png, over, npy) = (
                format!("{ENTRY}{base}.png"),
                format!("{ENTRY}{base}-overlay.png"),
                format!("{ENTRY}{base}.npy"),
            );
            MethodData::Map {
                cell: json!({
                    "target": cx.target, "heatmap": png, "overlay": over, "npy": npy,
                    "note": prepared.note, "min": lo, "max": hi,
                    "colorbar": colorbar_name(&prepared.scale), "shape": crate::site::shape_str(&dims),
                    "metrics": metrics,
                }),
                artifact: Artifact {
                    kind: "attribution".into(),
                    method: Some(method.id().to_string()),
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
            let mut views = Vec::new();
            let mut artifacts = Vec::new();
            for (name, g) in &grads {
                let Some(info) = layers.iter().find(|l| &l.name == name) else {
                    continue;
                };
                if let Some(v) = layer_picture(g, info, name, edir)? {
                    views.push(v);
                    artifacts.push(Artifact {
                        kind: "activation-gradient".into(),
                        method: Some(method.id().to_string()),
                        target: target(),
                        layer: Some(name.clone()),
                        png: Some(format!("{ENTRY}{name}.png")),
                        npy: Some(format!("{ENTRY}{name}.npy")),
                        shape: g.dims().to_vec(),
                        ..Default::default()
                    });
                }
            }
            MethodData::Layers {
                layers: views,
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
                if let Some((view, mut art)) = weight_picture(g, info, tensor, &info.name, edir)? {
                    tensors.push(view);
                    art.kind = "weight-gradient".into();
                    art.method = Some(method.id().to_string());
                    art.target = Some(ClassRef {
                        index: class,
                        name: String::new(),
                    });
                    artifacts.push(art);
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

/// Runs (or takes from the cache) the `wanted` methods of one pair for every target and,
/// with a site folder, links their files into the pair's pages.
#[allow(clippy::too_many_arguments)]
pub fn explain(
    site: &Site,
    p: Pair,
    x: &Tensor,
    shown: &DynamicImage,
    probs: &[f32],
    fkey: &str,
    cache: &Cache,
    wanted: &[bool],
    out: Option<&Path>,
    dir: &str,
) -> Result<Explained> {
    let mc = &site.config.models[p.model];
    let ic = &site.config.images[p.image];
    let lm = &site.models[p.model];
    let layers = lm.model.layers();
    let label = ic.label_index(mc);
    let targets = targets_for(&mc.targets, probs, &mc.classes, label);
    let loss_class = loss_class(probs, &mc.classes, label);
    let slugs = method_slugs(&mc.methods);
    let input_hw = (mc.input.height, mc.input.width);
    let draw = Drawing {
        shown,
        input_hw,
        zoom: grid::zoom_for(input_hw.0, input_hw.1, 224),
    };
    let mut ex = Explained::default();
    let mut cells: Vec<Vec<Value>> = vec![Vec::new(); mc.methods.len()];
    let mut times: Vec<Option<f64>> = vec![None; mc.methods.len()];

    // Per target, then the target-independent weight gradients (of the loss class).
    let mut runs: Vec<(usize, bool)> = targets.iter().map(|t| (t.index, true)).collect();
    runs.push((loss_class, false));
    for (class, per_target) in runs {
        // One context per class, so methods computed together share its forward + backward pass.
        let cx = Ctx::new(lm, mc.arch, &mc.input, x, class, loss_class);
        for (mi, method) in mc.methods.iter().enumerate() {
            if method.per_target() != per_target || !wanted.get(mi).copied().unwrap_or(false) {
                continue;
            }
            let params = method.params(mc.arch, &mc.input);
            let key = method_key(fkey, method, &params, class);
            let started = std::time::Instant::now();
            let stored = cache.get_or_put("method", &key, |edir| {
                compute_method(method, &cx, &params, layers, &draw, edir)
            })?;
            if stored.fresh {
                *times[mi].get_or_insert(0.0) += started.elapsed().as_secs_f64();
                ex.computed += 1;
            }
            let prefix = prefix_for(method, dir, &slugs[mi], class);
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
                    layers: views,
                    artifacts,
                } => {
                    let t = targets.iter().find(|t| t.index == class).expect("a target");
                    ex.activation_gradients.push(json!({
                        "target": t.index, "name": t.name, "roles": t.roles.join(", "), "layers": views}));
                    ex.artifacts.extend(artifacts.into_iter().map(complete));
                }
                MethodData::Weights {
                    class,
                    tensors,
                    artifacts,
                } => {
                    ex.weight_gradients = Some(json!({
                        "class": class, "name": mc.classes[class],
                        "why": if label.is_some() { "the image's label" } else { "the predicted class (the image has no label)" },
                        "tensors": tensors}));
                    ex.artifacts.extend(artifacts.into_iter().map(complete));
                }
            }
        }
    }

    for (mi, method) in mc.methods.iter().enumerate() {
        if method.is_map() {
            let params = method.params(mc.arch, &mc.input);
            ex.rows.push(json!({
                "slug": slugs[mi], "id": method.id(), "title": method.title(),
                "params": params_text(&params), "cells": cells[mi]}));
        }
    }
    ex.targets = targets;
    ex.timings = slugs.into_iter().zip(times).collect();
    Ok(ex)
}

/// The targets as the pages show them.
pub fn targets_view(targets: &[TargetInfo]) -> Vec<Value> {
    targets
        .iter()
        .map(|t| json!({"index": t.index, "name": t.name, "roles": t.roles.join(", "), "probability": pct(t.probability)}))
        .collect()
}
