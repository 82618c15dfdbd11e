//! A model × image page: the input as the model sees it, the top-5 classes, every layer's
//! activations, and a preview of the attribution matrix.

use std::path::Path;

use serde::Serialize;

use super::model::input_shape;
use super::pictures::{layer_view_of, LayerView};
use super::{pct, render, Base, Input};
use crate::build::compute::PairResult;
use crate::error::Result;
use crate::plan;
use crate::render::markdown::to_html;

/// Links between the pages of one pair (site-relative; none where a page is not built).
#[derive(Serialize, Clone)]
pub struct PairPages {
    pub href: String,
    pub attributions: Option<String>,
    pub gradients: Option<String>,
    pub randomisation: Option<String>,
    /// The model's draw-a-digit playground, when it has one.
    pub playground: Option<String>,
    pub overview: String,
}

impl PairPages {
    pub fn of(input: &Input, r: &PairResult) -> PairPages {
        let (mc, ic) = input.configs(r);
        let ex = &r.explained;
        PairPages {
            href: plan::href(&plan::image_page(&mc.id, &ic.id)),
            attributions: (!ex.rows.is_empty()).then(|| plan::href(&plan::attributions_page(&mc.id, &ic.id))),
            gradients: (!ex.activation_gradients.is_empty() || ex.weight_gradients.is_some())
                .then(|| plan::href(&plan::gradients_page(&mc.id, &ic.id))),
            randomisation: ex
                .randomisation
                .as_ref()
                .map(|_| plan::href(&plan::randomisation_page(&mc.id, &ic.id))),
            playground: crate::build::site::has_playground(mc, &input.site.models[r.pair.model])
                .then(|| plan::href(&plan::playground_page(&mc.id))),
            overview: plan::href(&plan::overview_page(&mc.id, &ic.id)),
        }
    }
}

#[derive(Serialize)]
pub struct ImageView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelHeader,
    pub image: ImageHeader,
    pub top5: Vec<TopClass>,
    pub layers: Vec<LayerView>,
    pub pair: PairPages,
    /// The first target's row of overlays, as a preview of the matrix.
    pub preview: Vec<PreviewCell>,
    pub preview_target: Option<String>,
    /// The model's previous and next images, in config order.
    pub prev: Option<NeighbourLink>,
    pub next: Option<NeighbourLink>,
}

#[derive(Serialize)]
pub struct NeighbourLink {
    pub id: String,
    pub href: String,
}

#[derive(Serialize)]
pub struct ModelHeader {
    pub id: String,
    pub arch: &'static str,
    pub href: String,
    pub input: String,
}

#[derive(Serialize)]
pub struct ImageHeader {
    pub id: String,
    pub caption: String,
    pub input: String,
    pub label: Option<Label>,
    pub correct: Option<bool>,
}

#[derive(Serialize)]
pub struct Label {
    pub index: usize,
    pub name: String,
}

#[derive(Serialize)]
pub struct TopClass {
    pub rank: usize,
    pub index: usize,
    pub name: String,
    pub probability: String,
    /// The bar's width in percent.
    pub width: String,
    pub is_label: bool,
}

#[derive(Serialize)]
pub struct PreviewCell {
    pub title: &'static str,
    pub slug: String,
    pub overlay: String,
}

pub fn view(input: &Input, r: &PairResult) -> ImageView {
    let site = input.site;
    let (mc, ic) = input.configs(r);
    let page = plan::image_page(&mc.id, &ic.id);
    let label = ic.label_index(mc);
    let ex = &r.explained;
    let siblings: Vec<&PairResult> = input.pairs_of_model(r.pair.model).collect();
    let at = siblings.iter().position(|p| p.pair == r.pair).unwrap_or(0);
    let neighbour = |step: isize| {
        let j = at.checked_add_signed(step)?;
        let p = siblings.get(j)?;
        let id = &site.config.images[p.pair.image].id;
        Some(NeighbourLink {
            id: id.clone(),
            href: plan::href(&plan::image_page(&mc.id, id)),
        })
    };
    ImageView {
        base: Base::new(
            site,
            &page,
            &format!("{} × {} · {}", mc.id, ic.id, site.config.site.title),
        ),
        model: ModelHeader {
            id: mc.id.clone(),
            arch: mc.arch.id,
            href: plan::href(&plan::model_page(&mc.id)),
            input: input_shape(mc),
        },
        image: ImageHeader {
            id: ic.id.clone(),
            caption: to_html(&ic.caption),
            input: r.input_png.clone(),
            label: label.map(|i| Label {
                index: i,
                name: mc.classes[i].clone(),
            }),
            correct: label.map(|l| l == r.top5[0].index),
        },
        top5: r
            .top5
            .iter()
            .enumerate()
            .map(|(k, c)| TopClass {
                rank: k + 1,
                index: c.index,
                name: c.name.clone(),
                probability: pct(c.probability),
                width: format!("{:.1}", 100.0 * c.probability),
                is_label: Some(c.index) == label,
            })
            .collect(),
        layers: r
            .layers
            .iter()
            .enumerate()
            .map(|(k, l)| {
                // The last layer's units are the classes: name them.
                let logits = k + 1 == r.layers.len() && l.shape == [mc.classes.len()];
                let mut v = layer_view_of(l, logits.then_some(mc.classes.as_slice()));
                let analysed = input
                    .units_of(r.pair.model)
                    .is_some_and(|u| u.layers.iter().any(|x| x.layer == l.name));
                let visualised = input
                    .featurevis_of(r.pair.model)
                    .is_some_and(|f| f.jobs.iter().any(|j| j.layer == l.name));
                v.units_href = (analysed || visualised).then(|| plan::href(&plan::layer_page(&mc.id, &l.name)));
                v
            })
            .collect(),
        pair: PairPages::of(input, r),
        preview: ex
            .rows
            .iter()
            .filter_map(|row| {
                row.cells.first().map(|c| PreviewCell {
                    title: mc.methods[row.method].title(),
                    slug: row.slug.clone(),
                    overlay: c.overlay.clone(),
                })
            })
            .collect(),
        preview_target: ex.targets.first().map(|t| t.name.clone()),
        prev: neighbour(-1),
        next: neighbour(1),
    }
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let mut pages = 0;
    for r in input.pairs {
        let site = input.site;
        let (mc, ic) = input.configs(r);
        render(
            site,
            out,
            &plan::image_page(&mc.id, &ic.id),
            "image.html",
            &view(input, r),
        )?;
        pages += 1;
        pages += super::attributions::write(input, r, out)?;
        pages += super::gradients::write(input, r, out)?;
        pages += super::randomisation::write(input, r, out)?;
    }
    Ok(pages)
}
