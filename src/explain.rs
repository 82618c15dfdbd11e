//! Runs the configured attribution methods for one model × image pair, for every target
//! class, and writes their arrays and pictures. Methods that share a forward + backward pass
//! get it from one [`Ctx`] per target.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Tensor;
use image::DynamicImage;
use serde_json::{json, Value};

use crate::config::TargetSpec;
use crate::error::Result;
use crate::methods::{Ctx, MethodSpec, Output};
use crate::plan::Pair;
use crate::render::attribution::{heatmap, overlay, prepare};
use crate::render::grid;
use crate::site::{colorbar_name, layer_picture, mkdir, pct, weight_picture, write_npy, Artifact, ClassRef, Site};

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
    /// Seconds spent per method (summed over targets), in list order.
    pub timings: Vec<(String, f64)>,
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

pub fn explain(
    site: &Site,
    p: Pair,
    x: &Tensor,
    shown: &DynamicImage,
    probs: &[f32],
    out: &Path,
    dir: &str,
) -> Result<Explained> {
    let mc = &site.config.models[p.model];
    let ic = &site.config.images[p.image];
    let lm = &site.models[p.model];
    let label = ic.label_index(mc);
    let targets = targets_for(&mc.targets, probs, &mc.classes, label);
    let predicted = targets_for(&[TargetSpec::Predicted], probs, &mc.classes, None)[0].index;
    let loss_class = label.unwrap_or(predicted);
    let slugs = method_slugs(&mc.methods);
    let input_hw = (mc.input.height, mc.input.width);
    let zoom = grid::zoom_for(input_hw.0, input_hw.1, 224);
    let class_ref = |i: usize| ClassRef {
        index: i,
        name: mc.classes[i].clone(),
    };
    let mut ex = Explained::default();
    let mut cells: Vec<Vec<Value>> = vec![Vec::new(); mc.methods.len()];
    let mut times = vec![0f64; mc.methods.len()];

    for t in &targets {
        let cx = Ctx::new(lm, mc.arch, &mc.input, x, t.index, loss_class);
        for (mi, method) in mc.methods.iter().enumerate() {
            if !method.per_target() {
                continue;
            }
            let params = method.params(mc.arch, &mc.input);
            let started = std::time::Instant::now();
            let output = method.run(&cx)?;
            times[mi] += started.elapsed().as_secs_f64();
            match output {
                Output::Map(map) => {
                    let base = format!("{dir}/attributions/{}/{}", slugs[mi], t.index);
                    mkdir(&out.join(format!("{dir}/attributions/{}", slugs[mi])))?;
                    let dims = map.data.dims().to_vec();
                    let raw = map
                        .data
                        .flatten_all()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_vec1::<f32>()?;
                    let prepared = prepare(&raw, &dims, map.view, input_hw);
                    let heat = heatmap(&prepared, zoom);
                    let over = overlay(shown, &heat);
                    grid::save_png(&heat, &out.join(format!("{base}.png")))?;
                    grid::save_png(&over, &out.join(format!("{base}-overlay.png")))?;
                    write_npy(&map.data, &out.join(format!("{base}.npy")))?;
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
                    cells[mi].push(json!({
                        "target": t.index, "heatmap": format!("{base}.png"), "overlay": format!("{base}-overlay.png"),
                        "npy": format!("{base}.npy"), "note": prepared.note, "min": lo, "max": hi,
                        "colorbar": colorbar_name(&prepared.scale), "shape": crate::site::shape_str(&dims),
                        "metrics": metrics,
                    }));
                    ex.artifacts.push(Artifact {
                        kind: "attribution",
                        model: mc.id.clone(),
                        image: Some(ic.id.clone()),
                        method: Some(method.id().to_string()),
                        target: Some(class_ref(t.index)),
                        layer: map.layer.clone(),
                        params: Some(params),
                        png: Some(format!("{base}.png")),
                        overlay: Some(format!("{base}-overlay.png")),
                        npy: Some(format!("{base}.npy")),
                        shape: dims,
                        metrics: (!map.metrics.is_empty()).then_some(map.metrics),
                    });
                }
                Output::Layers(grads) => {
                    let gdir = format!("{dir}/activation-gradients/{}", t.index);
                    mkdir(&out.join(&gdir))?;
                    let mut layers = Vec::new();
                    for (name, g) in &grads {
                        let Some(info) = lm.model.layers().iter().find(|l| &l.name == name) else {
                            continue;
                        };
                        let base = format!("{gdir}/{name}");
                        if let Some(v) = layer_picture(g, info, &base, out)? {
                            layers.push(v);
                            ex.artifacts.push(Artifact {
                                kind: "activation-gradient",
                                model: mc.id.clone(),
                                image: Some(ic.id.clone()),
                                method: Some(method.id().to_string()),
                                target: Some(class_ref(t.index)),
                                layer: Some(name.clone()),
                                png: Some(format!("{base}.png")),
                                npy: Some(format!("{base}.npy")),
                                shape: g.dims().to_vec(),
                                ..Default::default()
                            });
                        }
                    }
                    ex.activation_gradients.push(json!({
                        "target": t.index, "name": t.name, "roles": t.roles.join(", "), "layers": layers}));
                }
                Output::Weights { .. } => {}
            }
        }
    }

    // Target-independent: the loss's gradient at the weights.
    if let Some((wi, method)) = mc.methods.iter().enumerate().find(|(_, m)| !m.per_target()) {
        let cx = Ctx::new(lm, mc.arch, &mc.input, x, loss_class, loss_class);
        let started = std::time::Instant::now();
        let output = method.run(&cx)?;
        times[wi] += started.elapsed().as_secs_f64();
        if let Output::Weights { class, grads } = output {
            let wdir = format!("{dir}/weight-gradients");
            mkdir(&out.join(&wdir))?;
            let mut tensors = Vec::new();
            for (tensor, g) in &grads {
                let Some(info) = lm
                    .model
                    .layers()
                    .iter()
                    .find(|l| l.weight.as_deref() == Some(tensor.as_str()))
                else {
                    continue;
                };
                let base = format!("{wdir}/{}", info.name);
                if let Some((view, mut art)) = weight_picture(g, info, tensor, &base, out, &mc.id)? {
                    tensors.push(view);
                    art.kind = "weight-gradient";
                    art.image = Some(ic.id.clone());
                    art.method = Some(method.id().to_string());
                    art.target = Some(class_ref(class));
                    ex.artifacts.push(art);
                }
            }
            ex.weight_gradients = Some(json!({
                "class": class, "name": mc.classes[class],
                "why": if label.is_some() { "the image's label" } else { "the predicted class (the image has no label)" },
                "tensors": tensors}));
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
