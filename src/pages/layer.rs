//! A layer's units over the model's dataset: every unit as a thumbnail (sortable by class
//! selectivity), the selectivity histogram, the class × unit matrix in clustered order,
//! and links to the layer's embedding and directions pages.

use std::path::Path;

use serde::Serialize;

use super::{model_link, render, shape_str, Base, Input, ModelLink};
use crate::analysis::units::histogram;
use crate::build::units::{LayerUnits, UnitsResult};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::plan;
use crate::render::plot::histogram_chart;

#[derive(Serialize)]
pub struct LayerView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub layer: String,
    pub kind: String,
    pub shape: String,
    /// Whether a unit's score is a spatial maximum.
    pub spatial: bool,
    pub dataset: String,
    pub examples: usize,
    pub accuracy: Option<String>,
    pub units: Vec<UnitCell>,
    pub dead: usize,
    pub mean_selectivity: Option<String>,
    pub selectivity_chart: Option<String>,
    pub matrix: Option<MatrixView>,
    pub embedding: Option<String>,
    pub directions: Option<String>,
    /// The feature-visualization page, when this layer's units have pictures.
    pub fv_glance: Option<String>,
    /// Every analysed layer of the model, for navigation.
    pub layers: Vec<LayerNav>,
}

#[derive(Serialize)]
pub struct UnitCell {
    pub unit: usize,
    pub href: String,
    pub thumb: String,
    pub dead: bool,
    /// Shown, and the number the grid sorts by (−1 for a dead unit).
    pub selectivity: Option<String>,
    pub sort: f64,
    /// The class with the highest mean activation.
    pub preferred: Option<String>,
    /// The unit's feature visualization, when it has one.
    pub fv: Option<String>,
}

#[derive(Serialize)]
pub struct MatrixView {
    pub png: String,
    pub classes: Vec<String>,
    /// Units left to right.
    pub order: String,
}

#[derive(Serialize)]
pub struct LayerNav {
    pub name: String,
    pub href: String,
    pub current: bool,
}

/// The class a unit responds to most, by its class means.
pub fn preferred(means: &[Option<f64>], classes: &[String]) -> Option<String> {
    let (best, v) = means
        .iter()
        .enumerate()
        .filter_map(|(c, m)| m.map(|m| (c, m)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (v > 0.0).then(|| classes.get(best).cloned().unwrap_or_else(|| best.to_string()))
}

pub fn layer_navs(mc: &ModelConfig, u: &UnitsResult, current: &str) -> Vec<LayerNav> {
    u.layers
        .iter()
        .map(|l| LayerNav {
            name: l.layer.clone(),
            href: plan::href(&plan::layer_page(&mc.id, &l.layer)),
            current: l.layer == current,
        })
        .collect()
}

fn view(input: &Input, u: &UnitsResult, l: &LayerUnits) -> Result<LayerView> {
    let site = input.site;
    let mc = &site.config.models[u.model];
    let page = plan::layer_page(&mc.id, &l.layer);
    let info = site.models[u.model].model.layers().iter().find(|x| x.name == l.layer);
    let mu = site.units[u.model].as_ref().expect("a model with results has units");
    let sel: Vec<f64> = l
        .units
        .iter()
        .filter(|x| !x.dead)
        .filter_map(|x| x.selectivity)
        .collect();
    let selectivity_chart = if sel.is_empty() {
        None
    } else {
        let v: Vec<f32> = sel.iter().map(|&s| s as f32).collect();
        let h = histogram(&v, 20);
        Some(histogram_chart(
            &format!("class selectivity of {}'s live units", l.layer),
            "selectivity index",
            h.min as f64,
            h.max as f64,
            &[("units", h.counts)],
        )?)
    };
    let embedded = mu
        .config
        .embedding
        .as_ref()
        .is_some_and(|e| e.layers.contains(&l.layer));
    let directed = mu.config.directions.as_ref().is_some_and(|d| d.layer == l.layer);
    Ok(LayerView {
        base: Base::new(site, &page, &format!("{} · {}", mc.id, l.layer)),
        model: model_link(&mc.id),
        layer: l.layer.clone(),
        kind: info.map(|i| i.kind.as_str().to_string()).unwrap_or_default(),
        shape: shape_str(&l.shape),
        spatial: l.shape.len() > 1,
        dataset: site.config.datasets[mu.config.dataset].id.clone(),
        examples: l.examples,
        accuracy: u.accuracy.map(|a| format!("{:.1}%", 100.0 * a)),
        units: l
            .units
            .iter()
            .map(|x| UnitCell {
                unit: x.unit,
                href: plan::href(&plan::unit_page(&mc.id, &l.layer, x.unit)),
                thumb: x.thumb_png.clone(),
                dead: x.dead,
                selectivity: x.selectivity.filter(|_| !x.dead).map(|s| format!("{s:.2}")),
                sort: if x.dead { -1.0 } else { x.selectivity.unwrap_or(0.0) },
                preferred: x.class_means.as_ref().and_then(|m| preferred(m, &mc.classes)),
                fv: input
                    .featurevis_of(u.model)
                    .and_then(|r| r.find(&l.layer, x.unit))
                    .map(|(_, f)| f.pngs[0].clone()),
            })
            .collect(),
        fv_glance: input
            .featurevis_of(u.model)
            .filter(|r| r.jobs.iter().any(|j| j.layer == l.layer))
            .map(|_| plan::href(&plan::featurevis_page(&mc.id))),
        dead: l.dead,
        mean_selectivity: (!sel.is_empty()).then(|| format!("{:.2}", sel.iter().sum::<f64>() / sel.len() as f64)),
        selectivity_chart,
        matrix: l.matrix_png.as_ref().map(|png| MatrixView {
            png: png.clone(),
            classes: mc.classes.clone(),
            order: l.order.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(", "),
        }),
        embedding: embedded.then(|| plan::href(&plan::embedding_page(&mc.id, &l.layer))),
        directions: directed.then(|| plan::href(&plan::directions_page(&mc.id, &l.layer))),
        layers: layer_navs(mc, u, &l.layer),
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let mut pages = 0;
    for u in input.units {
        let mc = &input.site.config.models[u.model];
        // The analysed layers in network order, each linked to its neighbours.
        let order: Vec<(String, String)> = u
            .layers
            .iter()
            .map(|l| (format!("{} {}", mc.id, l.layer), plan::layer_page(&mc.id, &l.layer)))
            .collect();
        for (k, l) in u.layers.iter().enumerate() {
            let mut v = view(input, u, l)?;
            v.base.pager = super::Pager::of(&order, k);
            render(input.site, out, &order[k].1, "layer.html", &v)?;
            pages += 1;
        }
    }
    Ok(pages)
}
