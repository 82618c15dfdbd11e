//! How pages show the pictures of tensors: weight grids and layer maps, with their
//! captions, ranges and colour bars.

use serde::Serialize;

use super::{colorbar, shape_str};
use crate::render::pictures::{LayerPicture, WeightLayout, WeightPicture};

#[derive(Serialize)]
pub struct WeightView {
    pub layer: String,
    /// `filters` or `weights`.
    pub kind: &'static str,
    pub tensor: String,
    pub shape: String,
    pub caption: String,
    pub png: String,
    pub npy: String,
    pub min: f32,
    pub max: f32,
    pub colormap: &'static str,
    pub colorbar: &'static str,
}

/// What a weight picture shows, in words.
pub fn weight_caption(layout: &WeightLayout) -> String {
    match *layout {
        WeightLayout::Matrix {
            outputs: o,
            inputs: i,
            drawn_outputs: so,
            drawn_inputs: si,
        } => {
            if (so, si) != (o, i) {
                format!("{o} outputs (rows) × {i} inputs (columns); the first {so} × {si} are drawn and in the .npy")
            } else {
                format!("{o} outputs (rows) × {i} inputs (columns)")
            }
        }
        WeightLayout::Filters {
            filters: o,
            channels: i,
            kh,
            kw,
            drawn_filters: so,
            drawn_channels: si,
        } => {
            let part = if (so, si) != (o, i) {
                format!(" (first {so} filters × {si} channels shown)")
            } else {
                String::new()
            };
            if i > 1 {
                format!("{o} filters (rows) × {i} input channels (columns), {kh}×{kw} each{part}")
            } else {
                format!("{o} filters, {kh}×{kw} each{part}")
            }
        }
    }
}

pub fn weight_view(p: &WeightPicture) -> WeightView {
    let (min, max) = p.scale.range();
    WeightView {
        layer: p.layer.clone(),
        kind: if p.conv { "filters" } else { "weights" },
        tensor: p.tensor.clone(),
        shape: shape_str(&p.shape),
        caption: weight_caption(&p.layout),
        png: p.png.clone(),
        npy: p.npy.clone(),
        min,
        max,
        colormap: p.scale.name(),
        colorbar: colorbar(&p.scale),
    }
}

#[derive(Serialize)]
pub struct LayerView {
    pub name: String,
    /// The layer's unit page, when its units are analysed over a dataset.
    pub units_href: Option<String>,
    pub kind: String,
    pub shape: String,
    /// A fully connected layer, drawn as a strip.
    pub vector: bool,
    pub png: String,
    pub npy: String,
    /// The colour scale's range.
    pub min: f32,
    pub max: f32,
    /// The values' range.
    pub value_min: f32,
    pub value_max: f32,
    pub colormap: &'static str,
    pub colorbar: &'static str,
    pub strongest: Option<Vec<usize>>,
    pub shown: Option<usize>,
}

pub fn layer_view(p: &LayerPicture) -> LayerView {
    let (min, max) = p.scale.range();
    LayerView {
        units_href: None,
        name: p.name.clone(),
        kind: p.kind.clone(),
        shape: shape_str(&p.shape),
        vector: p.shape.len() == 1,
        png: p.png.clone(),
        npy: p.npy.clone(),
        min,
        max,
        value_min: p.value_min,
        value_max: p.value_max,
        colormap: p.scale.name(),
        colorbar: colorbar(&p.scale),
        strongest: p.strongest.clone(),
        shown: p.shown,
    }
}
