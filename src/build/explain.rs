//! Runs the configured attribution methods for one model × image pair, for every target
//! class, through the cache. Methods that share a forward + backward pass get it from one
//! [`Ctx`] per target. Results are typed numbers and file paths; the pages word them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::artifact::{Artifact, ClassRef};
use super::keys;
use crate::cache::{Cache, ENTRY};
use crate::config::{ImageConfig, ModelConfig, TargetSpec};
use crate::error::Result;
use crate::methods::{self, Ctx, MethodSpec, ModelInfo, Output};
use crate::metrics::deletion::{self, Curves};
use crate::metrics::randomisation::{self, Randomised};
use crate::models::{LayerInfo, LoadedModel};
use crate::plan;
use crate::render::attribution::{heatmap, overlay, prepare, Drawing, Prepared};
use crate::render::colormap::Scale;
use crate::render::pictures::{layer_picture, values, weight_picture, LayerPicture, WeightPicture};
use crate::render::{self, grid};

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
    /// Deletion and insertion per cell, where the metrics ask for them.
    pub curves: Vec<Option<Curves>>,
    /// The same maps on one scale for the whole row, when it has several targets.
    pub shared: Option<RowScale>,
}

/// A row's maps drawn on one colour scale, so that cells compare across targets (as cached).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowScale {
    /// CAMs: 0 to the row's largest raw value; input-space maps: the largest of the cells'
    /// own clips.
    pub scale: Scale,
    /// In the row's order: `<class>-row.png`, `<class>-row-overlay.png`.
    pub cells: Vec<SharedCell>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SharedCell {
    pub target: usize,
    pub heatmap: String,
    pub overlay: String,
}

/// Draws a row's maps, read from their method entries, on the row's common range.
/// `entries` holds each cell's method entry (folder, key), in the cells' order.
fn draw_row(cells: &[MapCell], entries: &[(PathBuf, String)], draw: &Drawn, edir: &Path) -> Result<RowScale> {
    let mut maps = Vec::new();
    for (cell, (dir, _)) in cells.iter().zip(entries) {
        let t = Tensor::read_npy(dir.join(format!("{}.npy", cell.target)))?;
        let (view, placement) = cell.drawing.view();
        maps.push((cell.target, t.dims().to_vec(), values(&t)?, view, placement));
    }
    let top = maps
        .iter()
        .map(|(_, dims, raw, view, _)| render::attribution::own_range(raw, dims, *view))
        .fold(0f32, f32::max);
    let mut scale = None;
    let mut out = Vec::new();
    for (target, dims, raw, view, placement) in maps {
        let p = render::attribution::prepare_scaled(&raw, &dims, view, draw.input_hw, placement, Some(top));
        let heat = heatmap(&p, draw.zoom);
        grid::save_png(&heat, &edir.join(format!("{target}-row.png")))?;
        grid::save_png(
            &overlay(draw.shown, &heat),
            &edir.join(format!("{target}-row-overlay.png")),
        )?;
        scale = Some(p.scale);
        out.push(SharedCell {
            target,
            heatmap: format!("{ENTRY}{target}-row.png"),
            overlay: format!("{ENTRY}{target}-row-overlay.png"),
        });
    }
    Ok(RowScale {
        scale: scale.unwrap_or(Scale::Sequential { min: 0.0, max: 1.0 }),
        cells: out,
    })
}

/// The randomisation test of one pair, as cached (paths start with [`ENTRY`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomisationResult {
    /// The class explained: the prediction.
    pub class: usize,
    pub checkpoints: Vec<String>,
    /// In the order of the metrics' methods.
    pub rows: Vec<RandomisationRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomisationRow {
    /// The method's name (the row's index into the configured list is its position).
    pub method: String,
    /// The map on the original model, drawn.
    pub original: String,
    /// Spearman correlation with the original map, per checkpoint.
    pub spearman: Vec<f64>,
    /// The map after each checkpoint, drawn like the matrix's heatmaps.
    pub maps: Vec<String>,
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
    /// The randomisation test, where the metrics ask for it.
    pub randomisation: Option<RandomisationResult>,
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

/// Whether a `targets:` list of a method or metric picks `class` (no list: every target).
fn picks(specs: Option<&Vec<TargetSpec>>, mc: &ModelConfig, probs: &[f32], label: Option<usize>, class: usize) -> bool {
    specs.is_none_or(|specs| {
        targets_for(specs, probs, &mc.classes, label)
            .iter()
            .any(|t| t.index == class)
    })
}

/// Whether method `mi` explains `class`: always, unless its own `targets:` leave it out.
pub fn method_explains(mc: &ModelConfig, mi: usize, probs: &[f32], label: Option<usize>, class: usize) -> bool {
    picks(
        mc.method_targets.get(mi).and_then(Option::as_ref),
        mc,
        probs,
        label,
        class,
    )
}

/// Whether the faithfulness metrics `f` take curves of `class`.
fn curves_for(
    f: &crate::metrics::Faithfulness,
    mc: &ModelConfig,
    probs: &[f32],
    label: Option<usize>,
    class: usize,
) -> bool {
    picks(f.targets.as_ref(), mc, probs, label, class)
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
    for (k, method) in mc.methods.iter().enumerate() {
        let params = method.params(&info);
        if method.per_target() {
            let mut row = Vec::new();
            for t in targets.iter().filter(|t| method_explains(mc, k, probs, label, t.index)) {
                let mkey = keys::method(fkey, method, &params, t.index);
                let wants = mc.metrics.faithfulness.as_ref();
                if let Some(f) = wants.filter(|f| f.methods.contains(&k) && curves_for(f, mc, probs, label, t.index)) {
                    keys.push(keys::faithfulness(&mkey, f.steps));
                }
                row.push(mkey.clone());
                keys.push(mkey);
            }
            if method.is_map() && row.len() > 1 {
                keys.push(keys::row_scale(&row));
            }
        } else {
            keys.push(keys::method(
                fkey,
                method,
                &params,
                loss_class(probs, &mc.classes, label),
            ));
        }
    }
    if let Some(r) = &mc.metrics.randomisation {
        let checkpoints = checkpoints_of(mc, layers);
        keys.push(randomisation_key(
            mc,
            &info,
            r,
            &checkpoints,
            fkey,
            predicted(probs, &mc.classes),
        ));
    }
    keys
}

/// The predicted class, which the randomisation test explains.
fn predicted(probs: &[f32], classes: &[String]) -> usize {
    targets_for(&[TargetSpec::Predicted], probs, classes, None)[0].index
}

/// The randomisation test's checkpoints: as configured, else the architecture's preset.
pub fn checkpoints_of(mc: &ModelConfig, layers: &[LayerInfo]) -> Vec<String> {
    mc.metrics
        .randomisation
        .as_ref()
        .and_then(|r| r.checkpoints.clone())
        .unwrap_or_else(|| randomisation::default_checkpoints(mc.arch, layers))
}

fn randomisation_key(
    mc: &ModelConfig,
    info: &ModelInfo,
    r: &crate::metrics::Randomisation,
    checkpoints: &[String],
    fkey: &str,
    class: usize,
) -> String {
    let listed: Vec<(&str, serde_json::Value)> = r
        .methods
        .iter()
        .map(|&k| (mc.methods[k].name(), mc.methods[k].params(info)))
        .collect();
    keys::randomisation(fkey, &listed, checkpoints, r.seed, class)
}

/// A map's deletion and insertion curves, from the cache or computed from its `.npy`.
fn faithfulness(
    p: &PairInput,
    cache: &Cache,
    method_entry: &crate::cache::Stored,
    cell: &MapCell,
    steps: usize,
) -> Result<(Curves, bool, String)> {
    let input_hw = (p.mc.input.height, p.mc.input.width);
    let stored = cache.get_or_put("faithfulness", &keys::faithfulness(&method_entry.key, steps), |_| {
        let map = Tensor::read_npy(method_entry.dir.join(format!("{}.npy", cell.target)))?;
        let (dims, raw) = (map.dims().to_vec(), values(&map)?);
        let (view, placement) = cell.drawing.view();
        let values = crate::metrics::pixel_values(&raw, &dims, view, input_hw, placement);
        deletion::curves(p.model.model.as_ref(), p.x, cell.target, &values, steps)
    })?;
    Ok((stored.placed("")?, stored.fresh, stored.key.clone()))
}

/// A map as the matrix draws it: its raw numbers, the prepared values and scale, and the
/// heatmap.
fn heat(map: &methods::Map, draw: &Drawn) -> Result<(Vec<f32>, Prepared, image::RgbImage)> {
    let raw = values(&map.data)?;
    let prepared = prepare(&raw, map.data.dims(), map.view, draw.input_hw, map.placement);
    let picture = heatmap(&prepared, draw.zoom);
    Ok((raw, prepared, picture))
}

/// Draws a map as the matrix does (its own scale) into `edir/name`; returns its values
/// per input pixel.
fn draw_map(map: &methods::Map, draw: &Drawn, edir: &Path, name: &str) -> Result<Vec<f32>> {
    let (raw, _, picture) = heat(map, draw)?;
    grid::save_png(&picture, &edir.join(name))?;
    Ok(crate::metrics::pixel_values(
        &raw,
        map.data.dims(),
        map.view,
        draw.input_hw,
        map.placement,
    ))
}

/// The randomisation test of one pair: each listed method's map for `class` on the
/// original model and after each checkpoint, drawn, with the Spearman correlations.
fn randomisation_test(
    p: &PairInput,
    r: &crate::metrics::Randomisation,
    randomised: &Randomised,
    class: usize,
    draw: &Drawn,
    edir: &Path,
) -> Result<RandomisationResult> {
    let cx = Ctx::new(p.model, p.mc.arch, &p.mc.input, p.x, class, class);
    let mut rows = Vec::new();
    for (row, &k) in r.methods.iter().enumerate() {
        let method = &p.mc.methods[k];
        let Output::Map(original) = method.run(&cx)? else {
            continue;
        };
        let base = draw_map(&original, draw, edir, &format!("r{row}-original.png"))?;
        let mut spearman = Vec::new();
        let mut maps = Vec::new();
        for (c, map) in randomisation::maps(method, randomised, p.x, class)?.iter().enumerate() {
            let name = format!("r{row}-{c}.png");
            let values = draw_map(map, draw, edir, &name)?;
            spearman.push(crate::metrics::spearman(&base, &values));
            maps.push(format!("{ENTRY}{name}"));
        }
        rows.push(RandomisationRow {
            method: method.name().to_string(),
            original: format!("{ENTRY}r{row}-original.png"),
            spearman,
            maps,
        });
    }
    Ok(RandomisationResult {
        class,
        checkpoints: randomised.checkpoints.clone(),
        rows,
    })
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
            let (_, prepared, heat) = heat(&map, draw)?;
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
    /// The model's randomised copies, when the metrics ask for the randomisation test.
    pub randomised: Option<&'a Randomised<'a>>,
}

/// Runs (or takes from the cache) the `wanted` methods of one pair for every target, with
/// their metrics, and the randomisation test if `randomise`; with a site folder, links
/// their files into the pair's pages.
pub fn explain(
    p: &PairInput,
    cache: &Cache,
    wanted: &[bool],
    randomise: bool,
    out: Option<&Path>,
) -> Result<Explained> {
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
    // Each cell's method entry: its folder and key, for the row's shared scale.
    let mut entries: Vec<Vec<(PathBuf, String)>> = vec![Vec::new(); mc.methods.len()];
    let mut curves: Vec<Vec<Option<Curves>>> = vec![Vec::new(); mc.methods.len()];
    // Seconds spent on the metrics, when computed.
    let (mut faith_time, mut rand_time): (Option<f64>, Option<f64>) = (None, None);
    let mut times: Vec<Option<f64>> = vec![None; mc.methods.len()];

    // Per target, then the target-independent weight gradients (of the loss class).
    let mut runs: Vec<(usize, bool)> = targets.iter().map(|t| (t.index, true)).collect();
    runs.push((loss_class, false));
    for (class, per_target) in runs {
        // One context per class, so methods computed together share its forward + backward pass.
        let cx = Ctx::new(p.model, mc.arch, &mc.input, p.x, class, loss_class);
        for (mi, method) in mc.methods.iter().enumerate() {
            if method.per_target() != per_target
                || !wanted.get(mi).copied().unwrap_or(false)
                || (per_target && !method_explains(mc, mi, p.probs, label, class))
            {
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
                    let wants = mc
                        .metrics
                        .faithfulness
                        .as_ref()
                        .filter(|f| f.methods.contains(&mi) && curves_for(f, mc, p.probs, label, class));
                    let found = match wants {
                        Some(f) => {
                            let started = std::time::Instant::now();
                            let (c, fresh, entry) = faithfulness(p, cache, &stored, &cell, f.steps).map_err(|e| {
                                e.context(format!(
                                    "model `{}` × image `{}`, deletion and insertion of `{}`, class {}",
                                    mc.id,
                                    ic.id,
                                    method.name(),
                                    class
                                ))
                            })?;
                            if fresh {
                                *faith_time.get_or_insert(0.0) += started.elapsed().as_secs_f64();
                            }
                            ex.computed += usize::from(fresh);
                            ex.artifacts.push(Artifact {
                                kind: "faithfulness".into(),
                                model: mc.id.clone(),
                                image: Some(ic.id.clone()),
                                method: Some(method.name().to_string()),
                                target: Some(ClassRef {
                                    index: class,
                                    name: mc.classes[class].clone(),
                                }),
                                deletion_auc: Some(c.deletion_auc),
                                insertion_auc: Some(c.insertion_auc),
                                deletion: Some(c.deletion.clone()),
                                insertion: Some(c.insertion.clone()),
                                entry: Some(entry),
                                ..Default::default()
                            });
                            Some(c)
                        }
                        None => None,
                    };
                    cells[mi].push(cell);
                    entries[mi].push((stored.dir.clone(), stored.key.clone()));
                    curves[mi].push(found);
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

    // The randomisation test, of the predicted class (its own unit of work for `--shard`).
    if let (Some(r), Some(randomised)) = (&mc.metrics.randomisation, p.randomised) {
        if !r.methods.is_empty() && randomise {
            let class = predicted(p.probs, &mc.classes);
            let key = randomisation_key(mc, &info, r, &randomised.checkpoints, p.fkey, class);
            let started = std::time::Instant::now();
            let stored = cache
                .get_or_put("randomisation", &key, |edir| {
                    randomisation_test(p, r, randomised, class, &draw, edir)
                })
                .map_err(|e| {
                    e.context(format!(
                        "model `{}` × image `{}`, randomisation test, class {class} `{}`",
                        mc.id, ic.id, mc.classes[class]
                    ))
                })?;
            ex.computed += usize::from(stored.fresh);
            if stored.fresh {
                rand_time = Some(started.elapsed().as_secs_f64());
            }
            let prefix = plan::randomisation_files(&mc.id, &ic.id);
            if let Some(out) = out {
                stored.link_into(out, &prefix)?;
            }
            let result: RandomisationResult = stored.placed(&prefix)?;
            for row in &result.rows {
                ex.artifacts.push(Artifact {
                    kind: "randomisation".into(),
                    model: mc.id.clone(),
                    image: Some(ic.id.clone()),
                    method: Some(row.method.clone()),
                    target: Some(ClassRef {
                        index: class,
                        name: mc.classes[class].clone(),
                    }),
                    checkpoints: Some(result.checkpoints.clone()),
                    spearman: Some(row.spearman.clone()),
                    entry: Some(stored.key.clone()),
                    ..Default::default()
                });
            }
            ex.randomisation = Some(result);
        }
    }

    for (mi, (((method, cells), curves), entries)) in mc.methods.iter().zip(cells).zip(curves).zip(entries).enumerate()
    {
        if !method.is_map() {
            continue;
        }
        let shared = if cells.len() > 1 {
            let keys: Vec<String> = entries.iter().map(|(_, k)| k.clone()).collect();
            let stored = cache
                .get_or_put("row-scale", &keys::row_scale(&keys), |edir| {
                    draw_row(&cells, &entries, &draw, edir)
                })
                .map_err(|e| {
                    e.context(format!(
                        "model `{}` × image `{}`, method `{}`: the row's shared scale",
                        mc.id,
                        ic.id,
                        method.name()
                    ))
                })?;
            let prefix = plan::attribution_files(&mc.id, &ic.id, &slugs[mi]);
            if let Some(out) = out {
                stored.link_into(out, &prefix)?;
            }
            Some(stored.placed::<RowScale>(&prefix)?)
        } else {
            None
        };
        ex.rows.push(MethodRow {
            method: mi,
            slug: slugs[mi].clone(),
            cells,
            curves,
            shared,
        });
    }
    ex.targets = targets;
    ex.timings = slugs.into_iter().zip(times).collect();
    ex.timings.push(("deletion and insertion".into(), faith_time));
    ex.timings.push(("randomisation test".into(), rand_time));
    Ok(ex)
}
