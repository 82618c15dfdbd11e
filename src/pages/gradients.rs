//! The gradients page of a pair: each target's score gradient at every layer, and the
//! loss's gradient at every weight.

use std::path::Path;

use serde::Serialize;

use super::attributions::PairHeader;
use super::pictures::{layer_view, weight_view, LayerView, WeightView};
use super::{render, Input};
use crate::build::compute::PairResult;
use crate::error::Result;
use crate::plan;

#[derive(Serialize)]
pub struct GradientsView {
    #[serde(flatten)]
    pub header: PairHeader,
    pub activation_gradients: Vec<TargetGradients>,
    pub weight_gradients: Option<WeightGradientsView>,
}

#[derive(Serialize)]
pub struct TargetGradients {
    pub target: usize,
    pub name: String,
    pub roles: String,
    pub layers: Vec<LayerView>,
}

#[derive(Serialize)]
pub struct WeightGradientsView {
    pub class: usize,
    pub name: String,
    /// Why this class: the label, or the prediction when there is none.
    pub why: &'static str,
    pub tensors: Vec<WeightView>,
}

pub fn view(input: &Input, r: &PairResult) -> GradientsView {
    let (mc, ic) = input.configs(r);
    let ex = &r.explained;
    GradientsView {
        header: PairHeader::new(input, r, &plan::gradients_page(&mc.id, &ic.id), "Gradients"),
        activation_gradients: ex
            .activation_gradients
            .iter()
            .map(|t| TargetGradients {
                target: t.target.index,
                name: t.target.name.clone(),
                roles: t.target.roles.join(", "),
                layers: t.layers.iter().map(layer_view).collect(),
            })
            .collect(),
        weight_gradients: ex.weight_gradients.as_ref().map(|w| WeightGradientsView {
            class: w.class,
            name: mc.classes[w.class].clone(),
            why: if w.from_label {
                "the image's label"
            } else {
                "the predicted class (the image has no label)"
            },
            tensors: w.tensors.iter().map(weight_view).collect(),
        }),
    }
}

pub fn write(input: &Input, r: &PairResult, out: &Path) -> Result<usize> {
    // The same rule as the links to the page.
    if super::image::PairPages::of(input, r).gradients.is_none() {
        return Ok(0);
    }
    let site = input.site;
    let (mc, ic) = input.configs(r);
    render(
        site,
        out,
        &plan::gradients_page(&mc.id, &ic.id),
        "gradients.html",
        &view(input, r),
    )?;
    Ok(1)
}
