//! Feature visualizations: a model's "units at a glance" page (a few units of every
//! visualised layer, Microscope-style), and the layer pages of visualised layers that have
//! no dataset analyses (every visualised unit of the layer). Unit pages are `unit.rs`'s.

use std::path::Path;

use serde::Serialize;

use super::layer::LayerNav;
use super::{model_link, render, shape_str, Base, Input, ModelLink};
use crate::build::featurevis::FvResult;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::plan;

/// Units per layer on the glance page.
pub const GLANCE: usize = 6;

#[derive(Serialize, Clone)]
pub struct FvCell {
    pub unit: usize,
    pub href: String,
    pub png: String,
    pub objective: String,
}

#[derive(Serialize)]
pub struct FvLayerRow {
    pub layer: String,
    pub href: String,
    pub kind: String,
    pub shape: String,
    /// Units visualised in this layer, and the first few.
    pub count: usize,
    pub cells: Vec<FvCell>,
    pub negative: bool,
    pub size: usize,
    pub steps: usize,
}

#[derive(Serialize)]
pub struct GlanceView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub rows: Vec<FvLayerRow>,
    pub pixelated: bool,
}

#[derive(Serialize)]
pub struct FvLayerView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub layer: String,
    pub kind: String,
    pub shape: String,
    pub units: usize,
    pub spatial: bool,
    pub cells: Vec<FvCell>,
    pub pixelated: bool,
    pub glance: String,
    pub layers: Vec<LayerNav>,
}

/// The visualised layers of a model, in config order, once each.
fn layer_names(r: &FvResult) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for j in &r.jobs {
        if !out.contains(&j.layer.as_str()) {
            out.push(&j.layer);
        }
    }
    out
}

pub fn layer_navs(r: &FvResult, mc: &ModelConfig, current: &str) -> Vec<LayerNav> {
    layer_names(r)
        .into_iter()
        .map(|l| LayerNav {
            name: l.to_string(),
            href: plan::href(&plan::layer_page(&mc.id, l)),
            current: l == current,
        })
        .collect()
}

fn cells(r: &FvResult, mc: &ModelConfig, layer: &str, limit: usize) -> Vec<FvCell> {
    r.units
        .iter()
        .flatten()
        .filter(|u| u.layer == layer)
        .take(limit)
        .map(|u| FvCell {
            unit: u.unit,
            href: plan::href(&plan::unit_page(&mc.id, layer, u.unit)),
            png: u.pngs[0].clone(),
            objective: format!("{:.2}", u.objective[0]),
        })
        .collect()
}

/// Up to `n` pictures spread over the visualised layers (one per layer in turn).
pub fn preview(r: &FvResult, mc: &ModelConfig, n: usize) -> Vec<FvCell> {
    let per: Vec<Vec<FvCell>> = layer_names(r).into_iter().map(|l| cells(r, mc, l, n)).collect();
    let mut out = Vec::new();
    for i in 0..n {
        for c in &per {
            if out.len() < n {
                if let Some(x) = c.get(i) {
                    out.push(x.clone());
                }
            }
        }
    }
    out
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    let mut pages = 0;
    for r in input.featurevis {
        let mc = &site.config.models[r.model];
        let infos = site.models[r.model].model.layers();
        let info = |l: &str| infos.iter().find(|x| x.name == l);
        let pixelated = r.jobs.iter().all(|j| j.settings.size <= 64);
        let glance = plan::featurevis_page(&mc.id);
        let rows = layer_names(r)
            .into_iter()
            .map(|l| {
                let job = r.jobs.iter().find(|j| j.layer == l).expect("listed");
                FvLayerRow {
                    layer: l.to_string(),
                    href: plan::href(&plan::layer_page(&mc.id, l)),
                    kind: info(l).map(|i| i.kind.as_str().to_string()).unwrap_or_default(),
                    shape: info(l).map(|i| shape_str(&i.output_shape)).unwrap_or_default(),
                    count: r.units.iter().flatten().filter(|u| u.layer == l).count(),
                    cells: cells(r, mc, l, GLANCE),
                    negative: job.settings.negative,
                    size: job.settings.size,
                    steps: job.settings.steps,
                }
            })
            .collect();
        render(
            site,
            out,
            &glance,
            "featurevis.html",
            &GlanceView {
                base: Base::new(site, &glance, &format!("{} · feature visualization", mc.id)),
                model: model_link(&mc.id),
                rows,
                pixelated,
            },
        )?;
        pages += 1;
        // Layers that the dataset analyses do not already give a page.
        let analysed = input.units_of(r.model);
        for l in layer_names(r) {
            if analysed.is_some_and(|u| u.layers.iter().any(|x| x.layer == l)) {
                continue;
            }
            let page = plan::layer_page(&mc.id, l);
            let i = info(l);
            let view = FvLayerView {
                base: Base::new(site, &page, &format!("{} · {}", mc.id, l)),
                model: model_link(&mc.id),
                layer: l.to_string(),
                kind: i.map(|i| i.kind.as_str().to_string()).unwrap_or_default(),
                shape: i.map(|i| shape_str(&i.output_shape)).unwrap_or_default(),
                units: i.and_then(|i| i.output_shape.first().copied()).unwrap_or(0),
                spatial: i.is_some_and(|i| i.output_shape.len() > 1),
                cells: cells(r, mc, l, usize::MAX),
                pixelated,
                glance: plan::href(&glance),
                layers: layer_navs(r, mc, l),
            };
            render(site, out, &page, "fv_layer.html", &view)?;
            pages += 1;
        }
    }
    Ok(pages)
}
