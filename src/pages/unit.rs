//! One unit of a layer: its feature visualization when one is configured, and over the
//! model's dataset (when it has unit analyses) its top examples (for conv units the crop
//! its maximum sees, and the whole input with that crop outlined), its filter when it is a
//! first-layer unit, its activation histogram, its class means and selectivity.

use std::path::Path;

use serde::Serialize;

use super::layer::{layer_navs, preferred, LayerNav};
use super::{model_link, render, Base, Input, ModelLink};
use crate::build::featurevis::{FvJob, FvResult, UnitFv};
use crate::build::units::{LayerUnits, UnitStats, UnitsResult};
use crate::config::PURITY_TOP;
use crate::error::Result;
use crate::plan;
use crate::render::plot::{bar_chart, histogram_chart, objective_chart};

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
    pub layers: Vec<LayerNav>,
    /// The unit over the model's dataset, when it has unit analyses.
    pub stats: Option<StatsView>,
    pub fv: Option<FvView>,
}

/// A unit's feature visualization as the unit page shows it.
#[derive(Serialize)]
pub struct FvView {
    pub pngs: Vec<String>,
    pub npys: Vec<String>,
    pub size: usize,
    /// Shown enlarged with square pixels (small inputs).
    pub pixelated: bool,
    pub objective: String,
    pub steps: usize,
    pub negative: bool,
    /// The settings in words.
    pub settings: String,
    /// What the optimiser followed, when not the layer itself.
    pub target: Option<String>,
    pub chart: String,
    pub spatial: bool,
    /// The model's feature-visualization page.
    pub glance: String,
}

pub fn fv_view(model: &str, job: &FvJob, f: &UnitFv) -> Result<FvView> {
    let s = &job.settings;
    let kind = match s.kind {
        crate::analysis::featurevis::Kind::Fft { decay } => format!("Fourier parameterisation (decay {decay})"),
        crate::analysis::featurevis::Kind::Pixel => "pixel parameterisation".to_string(),
    };
    let t = &s.transforms;
    let mut parts = vec![
        format!("{} steps of Adam at learning rate {}", s.steps, s.lr),
        kind,
        if s.decorrelate {
            "decorrelated colour".to_string()
        } else {
            "no colour decorrelation".to_string()
        },
        format!(
            "each step padded by {} px, shifted by up to {} px, scaled by {}–{}, rotated by up to ±{}°{}",
            t.pad,
            t.jitter,
            t.scale[0],
            t.scale[1],
            t.rotate,
            if t.fine_jitter > 1 {
                format!(", shifted again by up to {} px", t.fine_jitter)
            } else {
                String::new()
            }
        ),
    ];
    if s.offset != 0.0 {
        parts.push(format!("start offset {} before the sigmoid", s.offset));
    }
    if s.l2 > 0.0 {
        parts.push(format!("L2 penalty {} on the pixels", s.l2));
    }
    if s.images > 1 {
        parts.push(format!(
            "{} images pushed apart by a diversity term of weight {}",
            s.images, s.diversity
        ));
    }
    parts.push(format!("seed {}", s.seed));
    let objective = f
        .objective
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(FvView {
        pngs: f.pngs.clone(),
        npys: f.npys.clone(),
        size: f.size,
        pixelated: f.size <= 64,
        objective,
        steps: f.steps,
        negative: f.negative,
        settings: parts.join("; "),
        target: f.target.clone(),
        chart: objective_chart(&format!("unit {} over the optimisation", f.unit), &f.curve)?,
        spatial: job.spatial,
        glance: plan::href(&plan::featurevis_page(model)),
    })
}

#[derive(Serialize)]
pub struct StatsView {
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

fn view(input: &Input, u: &UnitsResult, l: &LayerUnits, x: &UnitStats, fv: Option<FvView>) -> Result<UnitView> {
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
    let stats = StatsView {
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
    };
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
        layers: layer_navs(mc, u, &l.layer),
        stats: Some(stats),
        fv,
    })
}

/// A unit that has a feature visualization and no dataset analyses: its neighbours are
/// the layer entry's other visualised units.
fn fv_only_view(input: &Input, r: &FvResult, ji: usize, i: usize) -> Result<UnitView> {
    let site = input.site;
    let mc = &site.config.models[r.model];
    let job = &r.jobs[ji];
    let list = &r.units[ji];
    let f = &list[i];
    let page = plan::unit_page(&mc.id, &f.layer, f.unit);
    let units = site.models[r.model]
        .model
        .layers()
        .iter()
        .find(|l| l.name == f.layer)
        .and_then(|l| l.output_shape.first().copied())
        .unwrap_or(0);
    let link = |j: usize| plan::href(&plan::unit_page(&mc.id, &f.layer, list[j].unit));
    Ok(UnitView {
        base: Base::new(site, &page, &format!("{} · {} · unit {}", mc.id, f.layer, f.unit)),
        model: model_link(&mc.id),
        layer: f.layer.clone(),
        layer_href: plan::href(&plan::layer_page(&mc.id, &f.layer)),
        unit: f.unit,
        units,
        prev: i.checked_sub(1).map(link),
        next: (i + 1 < list.len()).then(|| link(i + 1)),
        layers: super::featurevis::layer_navs(r, mc, &f.layer),
        stats: None,
        fv: Some(fv_view(&mc.id, job, f)?),
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let mut pages = 0;
    for u in input.units {
        let mc = &input.site.config.models[u.model];
        let fvs = input.featurevis_of(u.model);
        for l in &u.layers {
            for x in &l.units {
                let fv = match fvs.and_then(|r| r.find(&l.layer, x.unit)) {
                    Some((job, f)) => Some(fv_view(&mc.id, job, f)?),
                    None => None,
                };
                render(
                    input.site,
                    out,
                    &plan::unit_page(&mc.id, &l.layer, x.unit),
                    "unit.html",
                    &view(input, u, l, x, fv)?,
                )?;
                pages += 1;
            }
        }
    }
    for r in input.featurevis {
        let analysed = input.units_of(r.model);
        for (ji, list) in r.units.iter().enumerate() {
            if analysed.is_some_and(|u| u.layers.iter().any(|l| l.layer == r.jobs[ji].layer)) {
                continue;
            }
            for (i, f) in list.iter().enumerate() {
                let mc = &input.site.config.models[r.model];
                render(
                    input.site,
                    out,
                    &plan::unit_page(&mc.id, &f.layer, f.unit),
                    "unit.html",
                    &fv_only_view(input, r, ji, i)?,
                )?;
                pages += 1;
            }
        }
    }
    Ok(pages)
}
