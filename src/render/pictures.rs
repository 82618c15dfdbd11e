//! Pictures of tensors as the pages show them: a conv layer's filters or a linear layer's
//! matrix, and a layer's activations (or their gradients). Each writes `<base>.png` and
//! `<base>.npy` into a cache entry's folder and returns what the pages need as numbers —
//! the layout, the colour scale, the range — never wording.

use std::path::Path;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::colormap::Scale;
use super::grid::{self, Layout};
use crate::cache::ENTRY;
use crate::error::Result;
use crate::models::{LayerInfo, LayerKind};

/// How much of a weight tensor is drawn (and, for matrices, exported).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "lowercase")]
pub enum WeightLayout {
    /// A linear layer or a 1×1 conv: rows are outputs, columns inputs.
    Matrix {
        outputs: usize,
        inputs: usize,
        drawn_outputs: usize,
        drawn_inputs: usize,
    },
    /// A spatial conv: one small map per filter and input channel.
    Filters {
        filters: usize,
        channels: usize,
        kh: usize,
        kw: usize,
        drawn_filters: usize,
        drawn_channels: usize,
    },
}

/// A weight tensor (or its gradient) as drawn.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightPicture {
    pub layer: String,
    /// Whether the layer is a conv (its weights are shown as filters).
    pub conv: bool,
    pub tensor: String,
    /// Shape of the `.npy` (the drawn part, for matrices too large to export whole).
    pub shape: Vec<usize>,
    pub layout: WeightLayout,
    pub png: String,
    pub npy: String,
    pub scale: Scale,
}

/// A layer's output (or its gradient) as drawn: `C×H×W` as a grid, `N` as a strip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerPicture {
    pub name: String,
    pub kind: String,
    pub shape: Vec<usize>,
    pub png: String,
    pub npy: String,
    pub scale: Scale,
    pub value_min: f32,
    pub value_max: f32,
    /// For vectors: the three units with the largest values.
    pub strongest: Option<Vec<usize>>,
    /// How many maps are drawn when the layer has more than [`MAX_MAPS`].
    pub shown: Option<usize>,
    /// Grids: where each map is, the same maps each on its own scale (`<base>-maps.png`),
    /// and how many drawn maps stay below [`FAINT`] of the layer's scale.
    pub grid: Option<Layout>,
    pub per_map: Option<String>,
    pub faint: usize,
}

/// A map whose 99th percentile of |·| is below this fraction of its layer's largest
/// magnitude is faint: nearly white (or nearly dark) on the shared scale.
pub const FAINT: f32 = 0.2;

/// The most rows and columns of a weight matrix drawn and exported.
const MAX_ROWS: usize = 512;
const MAX_COLS: usize = 1024;

/// The most feature maps drawn for one layer.
pub const MAX_MAPS: usize = 64;

/// A tensor's numbers as f32, flattened (weights may be stored as f16 or bf16).
pub fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?)
}

/// Draws a conv or linear weight tensor (or its gradient) as `<base>.png/.npy` in `edir`;
/// `None` for tensors that are neither.
pub fn weight_picture(
    w: &Tensor,
    layer: &LayerInfo,
    tensor: &str,
    base: &str,
    edir: &Path,
) -> Result<Option<WeightPicture>> {
    let dims = w.dims().to_vec();
    let data = values(w)?;
    let scale = Scale::fit(&data);
    // Large layers are drawn in part (the .npy always holds everything): at most 64 filters
    // and 16 input channels for spatial kernels; 1×1 kernels and linear layers as a matrix.
    let (picture, layout, stored) = match (layer.kind, dims.as_slice()) {
        (LayerKind::Conv, &[o, i, 1, 1]) | (LayerKind::Linear, &[o, i]) => {
            // Huge matrices (VGG's 4096 × 25088) are drawn and exported in part.
            let (so, si) = (o.min(MAX_ROWS), i.min(MAX_COLS));
            let zoom = (480 / so.max(si) as u32).clamp(1, 8);
            let layout = WeightLayout::Matrix {
                outputs: o,
                inputs: i,
                drawn_outputs: so,
                drawn_inputs: si,
            };
            if (so, si) != (o, i) {
                let part = w.narrow(0, 0, so)?.narrow(1, 0, si)?;
                let picture = grid::maps(&values(&part)?, 1, so, si, 1, zoom, &scale);
                (picture, layout, part)
            } else {
                (grid::maps(&data, 1, o, i, 1, zoom, &scale), layout, w.clone())
            }
        }
        (LayerKind::Conv, &[o, i, kh, kw]) => {
            let (so, si) = (o.min(if i > 1 { 32 } else { 64 }), i.min(16));
            let mut shown = Vec::with_capacity(so * si * kh * kw);
            for f in 0..so {
                let start = f * i * kh * kw;
                shown.extend_from_slice(&data[start..start + si * kh * kw]);
            }
            let cols = if i > 1 { si } else { so.min(16) };
            let zoom = grid::zoom_for(kh, kw, if kh * kw >= 25 { 60 } else { 40 });
            let layout = WeightLayout::Filters {
                filters: o,
                channels: i,
                kh,
                kw,
                drawn_filters: so,
                drawn_channels: si,
            };
            (
                grid::maps(&shown, so * si, kh, kw, cols, zoom, &scale),
                layout,
                w.clone(),
            )
        }
        _ => return Ok(None),
    };
    grid::save_png(&picture, &edir.join(format!("{base}.png")))?;
    crate::data::npy::write(&stored, &edir.join(format!("{base}.npy")))?;
    Ok(Some(WeightPicture {
        layer: layer.name.clone(),
        conv: layer.kind == LayerKind::Conv,
        tensor: tensor.to_string(),
        shape: stored.dims().to_vec(),
        layout,
        png: format!("{ENTRY}{base}.png"),
        npy: format!("{ENTRY}{base}.npy"),
        scale,
    }))
}

/// How many of the `hw`-value maps in `data` are faint against a layer whose largest
/// magnitude is `top` (see [`FAINT`]).
fn faint_maps(data: &[f32], hw: usize, top: f32) -> usize {
    data.chunks(hw)
        .filter(|m| super::attribution::percentile_abs(m, 0.99) < FAINT * top)
        .count()
}

/// Draws one layer's maps (`C×H×W`: a grid) or units (`N`: a strip) as `<base>.png/.npy`
/// in `edir`; used for activations and their gradients alike.
pub fn layer_picture(a: &Tensor, info: &LayerInfo, base: &str, edir: &Path) -> Result<Option<LayerPicture>> {
    let dims = a.dims().to_vec();
    let data = values(a)?;
    let scale = Scale::fit(&data);
    let (mut grid_layout, mut per_map, mut faint) = (None, None, 0);
    let picture = match *dims.as_slice() {
        // Wide layers show their first 64 maps; the .npy holds all of them.
        [c, h, w] => {
            let (count, cols, zoom) = (c.min(MAX_MAPS), c.min(8), grid::zoom_for(h, w, 84));
            // Each map on its own scale (of the layer's kind, so colours keep their meaning):
            // what the shared scale hides in weak maps.
            let hw = h * w;
            let own: Vec<Scale> = data
                .chunks(hw)
                .take(count)
                .map(|m| {
                    let peak = m.iter().fold(0f32, |p, v| p.max(v.abs())).max(1e-12);
                    match scale {
                        Scale::Diverging { .. } => Scale::Diverging { abs: peak },
                        Scale::Sequential { .. } => Scale::Sequential { min: 0.0, max: peak },
                    }
                })
                .collect();
            let (lo, hi) = scale.range();
            faint = faint_maps(&data[..count * hw], hw, lo.abs().max(hi.abs()));
            let each = grid::maps_each(&data, count, h, w, cols, zoom, |m| own[m]);
            grid::save_png(&each, &edir.join(format!("{base}-maps.png")))?;
            per_map = Some(format!("{ENTRY}{base}-maps.png"));
            grid_layout = Some(Layout::of(count, h, w, cols, zoom));
            grid::maps(&data, count, h, w, cols, zoom, &scale)
        }
        [n] => grid::strip(&data, (720 / n as u32).clamp(3, 24), 28, &scale),
        _ => return Ok(None),
    };
    grid::save_png(&picture, &edir.join(format!("{base}.png")))?;
    crate::data::npy::write(a, &edir.join(format!("{base}.npy")))?;
    let (value_min, value_max) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let strongest = (dims.len() == 1).then(|| {
        let mut idx: Vec<usize> = (0..data.len()).collect();
        idx.sort_by(|&a, &b| data[b].total_cmp(&data[a]).then(a.cmp(&b)));
        idx.truncate(3);
        idx
    });
    Ok(Some(LayerPicture {
        name: info.name.clone(),
        kind: info.kind.as_str().to_string(),
        shown: match *dims.as_slice() {
            [c, _, _] if c > MAX_MAPS => Some(MAX_MAPS),
            _ => None,
        },
        shape: dims,
        png: format!("{ENTRY}{base}.png"),
        npy: format!("{ENTRY}{base}.npy"),
        scale,
        value_min,
        value_max,
        strongest,
        grid: grid_layout,
        per_map,
        faint,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faint_maps_are_those_far_below_the_layers_scale() {
        // One strong map and three whose values stay under a fifth of it; a single bright
        // pixel (above the 99th percentile) does not make a map strong.
        let mut data = vec![10.0f32; 100];
        data.extend(vec![1.0; 100]);
        data.extend(vec![-1.9; 100]);
        let mut spike = vec![0.5; 100];
        spike[0] = 10.0;
        data.extend(spike);
        assert_eq!(faint_maps(&data, 100, 10.0), 3);
        assert_eq!(faint_maps(&data[..100], 100, 10.0), 0);
    }
}
