//! Feature visualizations through the cache: one entry per unit (its images as PNG and as
//! raw `.npy`, the final objective and the objective per step), keyed by the weights, the
//! input's normalisation, the layer, the unit and that layer's settings, so a change to one
//! layer entry recomputes only its units. Missing units of a layer entry are optimised
//! [`BATCH`] at a time, batches in parallel.

use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::artifact::Artifact;
use super::output::mkdir;
use crate::analysis::featurevis::{self as fv, Normalise, Settings};
use crate::cache::{Cache, KeyHasher, ENTRY};
use crate::config::{Config, FvLayer, ModelConfig, UnitSelection, MAX_ALL};
use crate::data::npy;
use crate::error::{Error, IoContext, Result};
use crate::models::{LayerKind, LoadedModel};
use crate::plan;
use crate::render::grid;

/// Units optimised together: a batch of 4 runs about 10% faster per unit than one at a
/// time on EfficientNet-Lite0 (docs/performance.md); results do not depend on it.
pub const BATCH: usize = 4;

/// A layer entry resolved against the loaded model.
#[derive(Debug, Clone)]
pub struct FvJob {
    pub layer: String,
    pub units: Vec<usize>,
    pub settings: Settings,
    /// The layer the network runs to, and how the unit is read there ([`fv::Follow`]).
    pub target: String,
    pub follow: fv::Follow,
    /// Whether the layer's output is a map (a unit is a channel).
    pub spatial: bool,
}

/// Resolves and checks a model's `feature_visualization` against its loaded layers: layer
/// names, unit numbers, and the size where a fully connected layer fixes it.
pub fn resolve(config: &Config, mi: usize, lm: &LoadedModel) -> Result<Option<Vec<FvJob>>> {
    let mc = &config.models[mi];
    let Some(f) = &mc.feature_visualization else {
        return Ok(None);
    };
    let layers = lm.model.layers();
    let mut jobs: Vec<FvJob> = Vec::new();
    for l in &f.layers {
        let j = job(config, mc, layers, l)?;
        // One visualization per unit: the pages show one, and the files would collide.
        for (e, other) in jobs.iter().enumerate().filter(|(_, o)| o.layer == j.layer) {
            if let Some(u) = j.units.iter().find(|u| other.units.contains(u)) {
                return Err(config.error(
                    &format!("{}.units", l.key),
                    format!("unit {u} of `{}` is already listed in {}.layers[{e}]", j.layer, f.key),
                ));
            }
        }
        jobs.push(j);
    }
    Ok(Some(jobs))
}

fn job(config: &Config, mc: &ModelConfig, layers: &[crate::models::LayerInfo], l: &FvLayer) -> Result<FvJob> {
    let Some(at) = layers.iter().position(|x| x.name == l.layer) else {
        let names: Vec<&str> = layers.iter().map(|x| x.name.as_str()).collect();
        return Err(config.error(
            &format!("{}.layer", l.key),
            format!(
                "model `{}` has no layer `{}` (its layers: {})",
                mc.id,
                l.layer,
                names.join(", ")
            ),
        ));
    };
    let info = &layers[at];
    let count = info.output_shape.first().copied().unwrap_or(0);
    let units = match &l.units {
        UnitSelection::All if count > MAX_ALL => {
            return Err(config.error(
                &format!("{}.units", l.key),
                format!(
                    "`all` would be {count} units of `{}`; list them or give a range such as \"0-15\" (at most {MAX_ALL} for `all`)",
                    l.layer
                ),
            ))
        }
        UnitSelection::All => (0..count).collect(),
        UnitSelection::List(v) => {
            if let Some(u) = v.iter().find(|&&u| u >= count) {
                return Err(config.error(
                    &format!("{}.units", l.key),
                    format!("unit {u} is out of range: `{}` has {count} units (0–{})", l.layer, count.saturating_sub(1)),
                ));
            }
            v.clone()
        }
    };
    // A fully connected layer at or before this one fixes the input size.
    let input = &mc.input;
    let fixed = layers[..=at].iter().any(|x| x.kind == LayerKind::Linear);
    let s = &l.settings;
    if fixed && (s.size != input.height || s.size != input.width) {
        return Err(config.error(
            &format!("{}.size", l.key),
            format!(
                "`{}` comes after a fully connected layer, so the image must have the model's input size {}×{}, not {}×{}",
                l.layer, input.height, input.width, s.size, s.size
            ),
        ));
    }
    if !fixed {
        let spec = crate::models::InputSpec {
            height: s.size,
            width: s.size,
            channels: input.channels,
        };
        (mc.arch.check_input)(&spec).map_err(|msg| config.error(&format!("{}.size", l.key), msg))?;
    }
    // A ReLU layer is read before the ReLU, so that a unit that starts off can turn on.
    let (target, follow) = match (info.kind, at.checked_sub(1).map(|p| &layers[p])) {
        (kind @ (LayerKind::Relu | LayerKind::Relu6), Some(prev))
            if prev.output_shape == info.output_shape
                && matches!(prev.kind, LayerKind::Linear | LayerKind::Conv | LayerKind::BatchNorm) =>
        {
            let follow = if kind == LayerKind::Relu {
                fv::Follow::BeforeRelu
            } else {
                fv::Follow::BeforeRelu6
            };
            (prev.name.clone(), follow)
        }
        _ => (l.layer.clone(), fv::Follow::Layer),
    };
    Ok(FvJob {
        layer: l.layer.clone(),
        units,
        settings: s.clone(),
        target,
        follow,
        spatial: info.output_shape.len() > 1,
    })
}

/// One unit's feature visualization, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitFv {
    pub layer: String,
    pub unit: usize,
    pub size: usize,
    pub steps: usize,
    pub negative: bool,
    /// One PNG per image, `size × size`.
    pub pngs: Vec<String>,
    pub npys: Vec<String>,
    /// The final mean activation of each image (untransformed).
    pub objective: Vec<f32>,
    /// The objective per step, averaged over the images.
    pub curve: Vec<f32>,
    /// What the optimiser followed, when not the layer itself.
    pub target: Option<String>,
    pub artifacts: Vec<Artifact>,
}

/// A model's feature visualizations, in config order (layer entries, then units).
pub struct FvResult {
    pub model: usize,
    pub jobs: Vec<FvJob>,
    /// Parallel to `jobs`: each entry's units.
    pub units: Vec<Vec<UnitFv>>,
    pub artifacts: Vec<Artifact>,
}

impl FvResult {
    /// The visualization of `unit` of `layer`, with its layer entry.
    pub fn find(&self, layer: &str, unit: usize) -> Option<(&FvJob, &UnitFv)> {
        self.jobs
            .iter()
            .zip(&self.units)
            .find_map(|(j, us)| us.iter().find(|u| u.layer == layer && u.unit == unit).map(|u| (j, u)))
    }
}

fn key(mc: &ModelConfig, weights_hash: &str, job: &FvJob, unit: usize) -> String {
    let i = &mc.input;
    let input = json!({"channels": i.channels, "mean": i.mean, "std": i.std});
    KeyHasher::new("featurevis")
        .field("arch", mc.arch.id)
        .field("weights", weights_hash)
        .field("input", input.to_string())
        .field("layer", &job.layer)
        .field("target", &job.target)
        .field("unit", unit.to_string())
        .field("settings", format!("{:?}", job.settings))
        .finish()
}

/// Every cache key of a model's feature visualizations (for `cache gc`).
pub fn keys(mc: &ModelConfig, weights_hash: &str, jobs: &[FvJob]) -> Vec<String> {
    jobs.iter()
        .flat_map(|j| j.units.iter().map(move |&u| key(mc, weights_hash, j, u)))
        .collect()
}

/// The image `c × n × n` on 0..1 as an RGB picture (grey repeated).
fn picture(img: &[f32], c: usize, n: usize) -> image::RgbImage {
    let plane = n * n;
    image::RgbImage::from_fn(n as u32, n as u32, |x, y| {
        let p = y as usize * n + x as usize;
        let v = |ch: usize| (img[ch.min(c - 1) * plane + p].clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}

/// Writes one unit's entry files and returns its data.
fn entry(v: &fv::Visualization, job: &FvJob, c: usize, edir: &Path) -> Result<UnitFv> {
    let n = job.settings.size;
    let k = v.unit;
    let dir = edir.join(format!("fv/{k}"));
    mkdir(&dir)?;
    let (mut pngs, mut npys, mut artifacts) = (Vec::new(), Vec::new(), Vec::new());
    for (i, img) in v.images.iter().enumerate() {
        let png = format!("fv/{k}/{i}.png");
        grid::save_png(&picture(img, c, n), &edir.join(&png))?;
        let npy_rel = format!("fv/{k}/{i}.npy");
        let p = edir.join(&npy_rel);
        std::fs::write(&p, npy::encode(&[c, n, n], img)).at_path(&p)?;
        artifacts.push(Artifact {
            kind: "feature-visualization".into(),
            layer: Some(job.layer.clone()),
            unit: Some(k),
            png: Some(format!("{ENTRY}{png}")),
            npy: Some(format!("{ENTRY}{npy_rel}")),
            shape: vec![c, n, n],
            objective: Some(v.objective[i] as f64),
            index: (v.images.len() > 1).then_some(i),
            ..Default::default()
        });
        pngs.push(format!("{ENTRY}{png}"));
        npys.push(format!("{ENTRY}{npy_rel}"));
    }
    Ok(UnitFv {
        layer: job.layer.clone(),
        unit: k,
        size: n,
        steps: job.settings.steps,
        negative: job.settings.negative,
        pngs,
        npys,
        objective: v.objective.clone(),
        curve: v.curve.clone(),
        target: (job.target != job.layer).then(|| job.target.clone()),
        artifacts,
    })
}

/// Computes what is missing for every model with feature visualizations (all batches of
/// all models in one parallel pool) and places every entry into `out`.
pub fn compute_all(
    config: &Config,
    models: &[LoadedModel],
    jobs: &[Option<Vec<FvJob>>],
    weights: &[String],
    out: Option<&Path>,
    cache: &Cache,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Vec<FvResult>> {
    // (model, job, units) batches of missing units.
    let mut batches: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for (mi, js) in jobs.iter().enumerate() {
        let Some(js) = js else { continue };
        let mc = &config.models[mi];
        for (ji, j) in js.iter().enumerate() {
            let missing: Vec<usize> = j
                .units
                .iter()
                .copied()
                .filter(|&u| cache.get(&key(mc, &weights[mi], j, u)).is_none())
                .collect();
            batches.extend(missing.chunks(BATCH).map(|c| (mi, ji, c.to_vec())));
        }
    }
    let fresh: std::collections::HashSet<String> = batches
        .iter()
        .flat_map(|(mi, ji, us)| {
            let j = &jobs[*mi].as_ref().expect("listed")[*ji];
            us.iter().map(move |&u| key(&config.models[*mi], &weights[*mi], j, u))
        })
        .collect();
    let total = batches.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    batches.par_iter().try_for_each(|(mi, ji, units)| -> Result<()> {
        let mc = &config.models[*mi];
        let job = &jobs[*mi].as_ref().expect("listed")[*ji];
        let started = Instant::now();
        let norm = Normalise {
            mean: &mc.input.mean,
            std: &mc.input.std,
        };
        let vs = fv::optimise(
            models[*mi].model.as_ref(),
            &norm,
            mc.input.channels,
            &job.layer,
            &job.target,
            job.follow,
            units,
            &job.settings,
            &|_| {},
        )
        .map_err(|e| e.context(format!("model `{}`", mc.id)))?;
        for v in &vs {
            let stored = cache.put("featurevis", &key(mc, &weights[*mi], job, v.unit), |edir| {
                entry(v, job, mc.input.channels, edir)
            })?;
            if out.is_none() {
                // A shard places nothing, so it counts what it computed here.
                cache.record(&stored);
            }
        }
        let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let shown: Vec<String> = units.iter().map(|u| u.to_string()).collect();
        log(&crate::progress::step_line(
            n,
            total,
            &format!(
                "feature visualization: {} {} units {} ({} steps, {:.1} s)",
                mc.id,
                job.layer,
                shown.join(", "),
                job.settings.steps,
                started.elapsed().as_secs_f64()
            ),
        ));
        Ok(())
    })?;
    // A shard only computes; a build places every entry, in config order.
    let mut results = Vec::new();
    if out.is_none() {
        return Ok(results);
    }
    for (mi, js) in jobs.iter().enumerate() {
        let Some(js) = js else { continue };
        let mc = &config.models[mi];
        let mut units = Vec::new();
        let mut artifacts = Vec::new();
        for j in js {
            let prefix = plan::layer_files(&mc.id, &j.layer);
            let mut list = Vec::new();
            for &u in &j.units {
                let k = key(mc, &weights[mi], j, u);
                let mut stored = cache
                    .get(&k)
                    .ok_or_else(|| Error::msg(format!("cache entry {k} unreadable right after writing it")))?;
                stored.fresh = fresh.contains(&k);
                cache.record(&stored);
                if let Some(out) = out {
                    stored.link_into(out, &prefix)?;
                }
                let data: UnitFv = stored.placed(&prefix)?;
                for a in &data.artifacts {
                    artifacts.push(a.clone().complete(&stored, &prefix, &mc.id, None, &mc.classes));
                }
                list.push(data);
            }
            units.push(list);
        }
        results.push(FvResult {
            model: mi,
            jobs: js.clone(),
            units,
            artifacts,
        });
    }
    Ok(results)
}
