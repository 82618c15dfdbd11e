//! One unit of a layer over the model's dataset: its top examples (for conv units the
//! crop its maximum sees, and the whole input with that crop outlined), its filter when it
//! is a first-layer unit, its activation histogram, its class means and selectivity.

use std::path::Path;

use serde::Serialize;

use super::layer::{layer_navs, preferred, LayerNav};
use super::{model_link, render, Base, Input, ModelLink};
use crate::build::units::{LayerUnits, UnitStats, UnitsResult};
use crate::config::PURITY_TOP;
use crate::error::Result;
use crate::plan;
use crate::render::plot::{bar_chart, histogram_chart};

#[derive(Serialize)]
pub struct UnitView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub layer: String,
    pub layer_href: String,
    pub unit: usize,
    pub units: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub dataset: String,
    pub examples: usize,
    pub spatial: bool,
    /// How the crops were found, in words.
    pub placement: Option<String>,
    pub dead: bool,
    pub top_png: String,
    pub context_png: Option<String>,
    pub filter_png: Option<String>,
    pub shown: Vec<ExampleView>,
    pub histogram: String,
    pub class_chart: Option<String>,
    pub selectivity: Option<String>,
    pub preferred: Option<String>,
    pub purity: Option<String>,
    pub purity_top: usize,
    pub max: String,
    pub mean: String,
    pub layers: Vec<LayerNav>,
}

#[derive(Serialize)]
pub struct ExampleView {
    pub rank: usize,
    pub index: usize,
    pub score: String,
    pub label: Option<String>,
    pub source: String,
    /// `row, column` of the maximum in the unit's map.
    pub position: Option<String>,
    pub region: Option<String>,
}

fn view(input: &Input, u: &UnitsResult, l: &LayerUnits, x: &UnitStats) -> Result<UnitView> {
    let site = input.site;
    let mc = &site.config.models[u.model];
    let mu = site.units[u.model].as_ref().expect("a model with results has units");
    let page = plan::unit_page(&mc.id, &l.layer, x.unit);
    let labels = mu.prepared.labels.as_ref();
    let ds_id = &site.config.datasets[mu.config.dataset].id;
    let sources = &mu.sources;
    let h = &x.histogram;
    let histogram = histogram_chart(
        &format!("unit {} over {} examples", x.unit, l.examples),
        if l.shape.len() > 1 {
            "spatial maximum"
        } else {
            "activation"
        },
        h.min as f64,
        h.max as f64,
        &[("examples", h.counts.clone())],
    )?;
    let class_chart = match &x.class_means {
        Some(m) => Some(bar_chart(
            "mean activation per class",
            "mean",
            &mc.classes,
            &m.iter().map(|v| v.unwrap_or(0.0)).collect::<Vec<_>>(),
        )?),
        None => None,
    };
    let spatial = l.shape.len() > 1;
    let placement = spatial.then(|| {
        if x.shown.iter().any(|s| s.region.is_some()) {
            "Each crop is the part of the input the unit's strongest position sees (its receptive field, from the layer's kernels, strides and padding); grey is padding outside the input.".to_string()
        } else {
            "This architecture does not describe its receptive fields, so whole inputs are shown; the position of the maximum is listed below.".to_string()
        }
    });
    Ok(UnitView {
        base: Base::new(site, &page, &format!("{} · {} · unit {}", mc.id, l.layer, x.unit)),
        model: model_link(&mc.id),
        layer: l.layer.clone(),
        layer_href: plan::href(&plan::layer_page(&mc.id, &l.layer)),
        unit: x.unit,
        units: l.units.len(),
        prev: x
            .unit
            .checked_sub(1)
            .map(|p| plan::href(&plan::unit_page(&mc.id, &l.layer, p))),
        next: (x.unit + 1 < l.units.len()).then(|| plan::href(&plan::unit_page(&mc.id, &l.layer, x.unit + 1))),
        dataset: ds_id.clone(),
        examples: l.examples,
        spatial,
        placement,
        dead: x.dead,
        top_png: x.top_png.clone(),
        context_png: x.context_png.clone(),
        filter_png: x.filter_png.clone(),
        shown: x
            .shown
            .iter()
            .enumerate()
            .map(|(r, s)| ExampleView {
                rank: r + 1,
                index: s.index,
                score: format!("{:.3}", s.score),
                label: labels.map(|ls| mc.classes.get(ls[s.index]).cloned().unwrap_or_default()),
                source: sources.get(s.index).cloned().unwrap_or_default(),
                position: s.position.map(|[r, c]| format!("{r}, {c}")),
                region: s
                    .region
                    .map(|g| format!("rows {}–{}, columns {}–{}", g.y0, g.y1 - 1, g.x0, g.x1 - 1)),
            })
            .collect(),
        histogram,
        class_chart,
        selectivity: x.selectivity.map(|s| format!("{s:.3}")),
        preferred: x.class_means.as_ref().and_then(|m| preferred(m, &mc.classes)),
        purity: x.purity.map(|p| format!("{:.0}%", 100.0 * p)),
        purity_top: PURITY_TOP,
        max: format!("{:.3}", x.max),
        mean: format!("{:.3}", x.mean),
        layers: layer_navs(mc, u, &l.layer),
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let mut pages = 0;
    for u in input.units {
        let mc = &input.site.config.models[u.model];
        for l in &u.layers {
            for x in &l.units {
                render(
                    input.site,
                    out,
                    &plan::unit_page(&mc.id, &l.layer, x.unit),
                    "unit.html",
                    &view(input, u, l, x)?,
                )?;
                pages += 1;
            }
        }
    }
    Ok(pages)
}
