//! The network overview of a model on one image: every layer from the input to the
//! output, left to right, with its activation picture (feature maps as a stack of maps,
//! fully connected layers as bars, the output as labelled probabilities). The layout comes
//! from the model interface: layers feed the next in order, a layer marked `residual` adds
//! its input back (drawn as a skip arc), and layers of one `group` (a stage of blocks) fold
//! into one column that opens.

use std::path::Path;

use serde::Serialize;

use super::{model_link, pct, render, shape_str, thousands, Base, Input, ModelLink};
use crate::build::PairResult;
use crate::error::Result;
use crate::plan;

#[derive(Serialize)]
pub struct OverviewView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub image: String,
    pub image_href: String,
    pub input_png: String,
    pub input_shape: String,
    /// Small inputs are enlarged with square pixels.
    pub pixelated: bool,
    pub columns: Vec<Column>,
    pub output: Vec<OutputClass>,
    pub residuals: usize,
}

/// One column: a layer, or a stage of layers shown folded (its last layer) until opened.
#[derive(Serialize)]
pub struct Column {
    pub group: Option<String>,
    pub cells: Vec<Cell>,
    /// Layers of the group that add their input back.
    pub residual: usize,
}

#[derive(Serialize)]
pub struct Cell {
    pub name: String,
    pub kind: String,
    pub shape: String,
    pub parameters: String,
    pub png: String,
    pub vector: bool,
    /// The layer's own page, or its activations on the image page.
    pub href: String,
    pub residual: bool,
    /// Kind, shape and parameters in words (the hover text).
    pub title: String,
}

#[derive(Serialize)]
pub struct OutputClass {
    pub name: String,
    pub probability: String,
    pub width: String,
}

fn view(input: &Input, r: &PairResult) -> OverviewView {
    let site = input.site;
    let (mc, ic) = input.configs(r);
    let page = plan::overview_page(&mc.id, &ic.id);
    let infos = site.models[r.pair.model].model.layers();
    let has_page = |name: &str| {
        input
            .units_of(r.pair.model)
            .is_some_and(|u| u.layers.iter().any(|x| x.layer == name))
            || input
                .featurevis_of(r.pair.model)
                .is_some_and(|f| f.jobs.iter().any(|j| j.layer == name))
    };
    let image_page = plan::image_page(&mc.id, &ic.id);
    let mut columns: Vec<Column> = Vec::new();
    for p in &r.layers {
        let info = infos.iter().find(|l| l.name == p.name);
        let group = info.and_then(|l| l.group.clone());
        let residual = info.is_some_and(|l| l.residual);
        let parameters = info.map_or(0, |l| l.parameters);
        let cell = Cell {
            name: p.name.clone(),
            kind: p.kind.clone(),
            shape: shape_str(&p.shape),
            parameters: thousands(parameters),
            png: p.png.clone(),
            vector: p.shape.len() == 1,
            href: if has_page(&p.name) {
                plan::href(&plan::layer_page(&mc.id, &p.name))
            } else {
                format!("{}#layer-{}", plan::href(&image_page), p.name)
            },
            residual,
            title: format!(
                "{} · {} · output {} · {} parameters{}",
                p.name,
                p.kind,
                shape_str(&p.shape),
                thousands(parameters),
                if residual {
                    " · adds its input back (skip connection)"
                } else {
                    ""
                }
            ),
        };
        match columns.last_mut() {
            Some(c) if group.is_some() && c.group == group => {
                c.residual += residual as usize;
                c.cells.push(cell);
            }
            _ => columns.push(Column {
                group,
                residual: residual as usize,
                cells: vec![cell],
            }),
        }
    }
    OverviewView {
        base: Base::new(site, &page, &format!("{} · {} · network overview", mc.id, ic.id)),
        model: model_link(&mc.id),
        image: ic.id.clone(),
        image_href: plan::href(&image_page),
        input_png: r.input_png.clone(),
        input_shape: format!("{}×{}×{}", mc.input.channels, mc.input.height, mc.input.width),
        pixelated: mc.input.height.max(mc.input.width) <= 64,
        residuals: columns.iter().map(|c| c.residual).sum(),
        columns,
        output: r
            .top5
            .iter()
            .map(|c| OutputClass {
                name: c.name.clone(),
                probability: pct(c.probability),
                width: format!("{:.1}", 100.0 * c.probability),
            })
            .collect(),
    }
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let mut pages = 0;
    for r in input.pairs {
        let (mc, ic) = input.configs(r);
        render(
            input.site,
            out,
            &plan::overview_page(&mc.id, &ic.id),
            "overview.html",
            &view(input, r),
        )?;
        pages += 1;
    }
    Ok(pages)
}
