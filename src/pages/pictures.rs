//! How pages show the pictures of tensors: weight grids and layer maps, with their
//! captions, ranges and colour bars.

use serde::Serialize;

use super::{colorbar, shape_str};
use crate::render::grid::Layout;
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
                format!("{o} outputs (rows) × {i} inputs (columns); the drawing and the .npy hold a part, the first {so} outputs × {si} inputs")
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
                format!("; the drawing shows a part, the first {so} filters × {si} channels (the .npy holds all)")
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

/// The whole tensor's shape (the picture and a large matrix's `.npy` may hold a part).
fn tensor_shape(p: &WeightPicture) -> Vec<usize> {
    match p.layout {
        WeightLayout::Matrix { outputs, inputs, .. } if p.conv => vec![outputs, inputs, 1, 1],
        WeightLayout::Matrix { outputs, inputs, .. } => vec![outputs, inputs],
        WeightLayout::Filters {
            filters,
            channels,
            kh,
            kw,
            ..
        } => vec![filters, channels, kh, kw],
    }
}

pub fn weight_view(p: &WeightPicture) -> WeightView {
    let (min, max) = p.scale.range();
    WeightView {
        layer: p.layer.clone(),
        kind: if p.conv { "filters" } else { "weights" },
        tensor: p.tensor.clone(),
        shape: shape_str(&tensor_shape(p)),
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
    /// The strongest units, with their class names at the output layer.
    pub strongest: Option<Vec<String>>,
    pub shown: Option<usize>,
    /// Grids: each map's number at its top-left corner, in percent of the picture.
    pub numbers: Vec<MapNumber>,
    /// Grids: the same maps, each on its own scale.
    pub per_map: Option<String>,
    /// Most maps are faint on the shared scale: how many, said on the page.
    pub faint: Option<String>,
    /// Short strips (up to [`LABELLED`] units): one label per cell, the class names at the
    /// output layer.
    pub labels: Vec<String>,
    /// An id for the page's switches (the layer name, without dots).
    pub key: String,
}

/// A feature map's number where the grid draws it.
#[derive(Serialize)]
pub struct MapNumber {
    pub n: usize,
    pub left: String,
    pub top: String,
}

/// Strips of at most this many units get a label under each cell.
pub const LABELLED: usize = 20;

/// Numbers for the maps of a grid.
fn numbers(l: &Layout) -> Vec<MapNumber> {
    (0..l.count)
        .map(|m| {
            let (x, y) = l.corner(m);
            MapNumber {
                n: m,
                left: format!("{:.3}%", 100.0 * x as f64 / l.size[0] as f64),
                top: format!("{:.3}%", 100.0 * y as f64 / l.size[1] as f64),
            }
        })
        .collect()
}

pub fn layer_view(p: &LayerPicture) -> LayerView {
    layer_view_of(p, None)
}

/// [`layer_view`] for a layer whose units are the classes (the output layer).
pub fn layer_view_of(p: &LayerPicture, classes: Option<&[String]>) -> LayerView {
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
        strongest: p.strongest.as_ref().map(|v| {
            v.iter()
                .map(|&u| match classes.and_then(|c| c.get(u)) {
                    Some(name) => format!("{u} ({name})"),
                    None => u.to_string(),
                })
                .collect()
        }),
        shown: p.shown,
        numbers: p.grid.as_ref().map(numbers).unwrap_or_default(),
        per_map: p.per_map.clone(),
        faint: p
            .grid
            .as_ref()
            .filter(|g| 2 * p.faint > g.count)
            .map(|g| format!("{} of the {} maps shown", p.faint, g.count)),
        labels: match *p.shape.as_slice() {
            [n] if n <= LABELLED => (0..n)
                .map(|u| match classes.and_then(|c| c.get(u)) {
                    Some(name) => name.clone(),
                    None => u.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        },
        key: p.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
    }
}
