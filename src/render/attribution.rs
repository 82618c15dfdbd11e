//! Drawing attribution maps, one pipeline for every image:
//!
//! - input-space maps (`C×H×W`): reduce the channels (unsigned view: max of |·|; signed
//!   view: sum), clip at the 99th percentile of |values|, colour with viridis from 0 to that
//!   percentile (unsigned) or blue–white–red from −p99 to +p99 (signed);
//! - class activation maps (`h×w`): ReLU, min–max normalisation to 0..1, bilinear
//!   upsampling to the input size (cells placed at their receptive fields' centres where
//!   the layer's geometry is known, else stretched over the input), viridis;
//! - the matrix's shared row scale: the same steps with one range for all of a row's maps
//!   (CAMs: 0 to the row's largest raw value, no minimum subtracted);
//! - overlays: the coloured map over the input in grey, with alpha 0.5.

use image::{DynamicImage, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use super::colormap::Scale;
use crate::methods::View;

/// Channel reduction for an input-space map `(c, h, w)` to `h × w` values.
pub fn reduce(data: &[f32], c: usize, h: usize, w: usize, view: View) -> Vec<f32> {
    let hw = h * w;
    (0..hw)
        .map(|i| match view {
            View::Signed => (0..c).map(|k| data[k * hw + i]).sum(),
            _ => (0..c).map(|k| data[k * hw + i].abs()).fold(0.0, f32::max),
        })
        .collect()
}

/// The `q`-quantile (0..1) of |values|, by nearest rank.
pub fn percentile_abs(values: &[f32], q: f64) -> f32 {
    let mut a: Vec<f32> = values.iter().map(|v| v.abs()).filter(|v| v.is_finite()).collect();
    if a.is_empty() {
        return 0.0;
    }
    a.sort_by(f32::total_cmp);
    let idx = ((q * a.len() as f64).ceil() as usize).clamp(1, a.len()) - 1;
    a[idx]
}

/// Where a class activation map's cells sit on the input, the same on both axes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "lowercase")]
pub enum Placement {
    /// pytorch-grad-cam's resize: the map stretched over the whole input, cell `i`'s centre
    /// at `(i + ½)·H/h − ½`.
    #[default]
    Stretch,
    /// By the layer's receptive fields: cell `i`'s centre at input pixel `first + i·step`.
    Field { first: f32, step: f32 },
}

impl Placement {
    /// The placement of a layer's cells whose receptive fields are `field`.
    pub fn of_field(field: &crate::models::Field) -> Placement {
        Placement::Field {
            first: field.offset as f32 + (field.size - 1) as f32 / 2.0,
            step: field.stride as f32,
        }
    }

    /// The map coordinate of output pixel `y` of `out` pixels, for a map of `n` cells:
    /// `y·a + b` as `(a, b)`.
    fn affine(&self, n: usize, out: usize) -> (f32, f32) {
        match *self {
            Placement::Stretch => {
                let a = n as f32 / out as f32;
                (a, 0.5 * a - 0.5)
            }
            Placement::Field { first, step } => (1.0 / step, -first / step),
        }
    }
}

/// Bilinear resampling of an `h × w` map to `oh × ow`, with pixel centres aligned
/// (`align_corners = false`, as OpenCV's `resize` and PyTorch's default do).
pub fn bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    bilinear_placed(src, h, w, oh, ow, Placement::Stretch)
}

/// Bilinear resampling with the cells at `placement`; beyond the outermost cell centres
/// the edge values continue.
pub fn bilinear_placed(src: &[f32], h: usize, w: usize, oh: usize, ow: usize, placement: Placement) -> Vec<f32> {
    let mut out = vec![0f32; oh * ow];
    let (ay, by) = placement.affine(h, oh);
    let (ax, bx) = placement.affine(w, ow);
    for y in 0..oh {
        let fy = (y as f32 * ay + by).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..ow {
            let fx = (x as f32 * ax + bx).clamp(0.0, (w - 1) as f32);
            let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(w - 1);
            let top = src[y0 * w + x0] * (1.0 - tx) + src[y0 * w + x1] * tx;
            let bottom = src[y1 * w + x0] * (1.0 - tx) + src[y1 * w + x1] * tx;
            out[y * ow + x] = top * (1.0 - ty) + bottom * ty;
        }
    }
    out
}

/// A map ready to colour: `h × w` values at the input's resolution and their scale.
pub struct Prepared {
    pub values: Vec<f32>,
    pub h: usize,
    pub w: usize,
    pub scale: Scale,
    /// What was done to the raw numbers, for the page.
    pub drawing: Drawing,
}

/// The steps from a raw map to its picture, with their numbers (the pages word them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "steps", rename_all = "lowercase")]
pub enum Drawing {
    /// ReLU, min–max to 0..1 (raw range `raw_min … raw_max`), bilinear `from` → `to`
    /// with the cells at `placement`.
    Cam {
        raw_min: f32,
        raw_max: f32,
        from: [usize; 2],
        to: [usize; 2],
        #[serde(default)]
        placement: Placement,
    },
    /// Sum over channels, clipped at ±`clip` (the 99th percentile of |·|).
    Signed { clip: f32 },
    /// Max of |·| over channels, clipped at `clip` (the 99th percentile).
    Unsigned { clip: f32 },
}

impl Drawing {
    /// The view the map was drawn in and where a CAM's cells were placed: what redraws
    /// it from its raw numbers.
    pub fn view(&self) -> (View, Placement) {
        match *self {
            Drawing::Cam { placement, .. } => (View::Cam, placement),
            Drawing::Signed { .. } => (View::Signed, Placement::Stretch),
            Drawing::Unsigned { .. } => (View::Unsigned, Placement::Stretch),
        }
    }
}

/// Applies the pipeline above to a raw map. `dims` is `[c, h, w]` or `[h, w]`; `input`
/// is the model's input size `(H, W)`; `placement` places a CAM's cells.
pub fn prepare(data: &[f32], dims: &[usize], view: View, input: (usize, usize), placement: Placement) -> Prepared {
    prepare_scaled(data, dims, view, input, placement, None)
}

/// The range a map would be drawn with on its own: a CAM's largest value after the ReLU,
/// else the 99th percentile of the reduced values' magnitudes. A shared scale is the
/// largest of its maps' ranges.
pub fn own_range(data: &[f32], dims: &[usize], view: View) -> f32 {
    match view {
        View::Cam => data.iter().fold(0f32, |m, &v| m.max(v)),
        _ => clip_of(&reduced(data, dims, view)),
    }
}

fn reduced(data: &[f32], dims: &[usize], view: View) -> Vec<f32> {
    let (c, h, w) = match *dims {
        [c, h, w] => (c, h, w),
        [h, w] => (1, h, w),
        _ => (1, 1, data.len()),
    };
    reduce(data, c, h, w, view)
}

/// The 99th percentile of |values|, or their largest magnitude where that is 0.
fn clip_of(values: &[f32]) -> f32 {
    let p = percentile_abs(values, 0.99);
    if p > 0.0 {
        p
    } else {
        values.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12)
    }
}

/// [`prepare`], on a given range (`shared`: a row's common scale) instead of the map's own.
pub fn prepare_scaled(
    data: &[f32],
    dims: &[usize],
    view: View,
    input: (usize, usize),
    placement: Placement,
    shared: Option<f32>,
) -> Prepared {
    match view {
        View::Cam => {
            let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
            let relu: Vec<f32> = data.iter().map(|v| v.max(0.0)).collect();
            let (lo, hi) = relu
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            // On its own: min–max to 0..1. Shared: raw values on 0..shared.
            let (norm, scale): (Vec<f32>, Scale) = match shared {
                Some(top) => (
                    relu,
                    Scale::Sequential {
                        min: 0.0,
                        max: top.max(1e-12),
                    },
                ),
                None if hi > lo => (
                    relu.iter().map(|v| (v - lo) / (hi - lo)).collect(),
                    Scale::Sequential { min: 0.0, max: 1.0 },
                ),
                None => (vec![0.0; relu.len()], Scale::Sequential { min: 0.0, max: 1.0 }),
            };
            Prepared {
                values: bilinear_placed(&norm, h, w, input.0, input.1, placement),
                h: input.0,
                w: input.1,
                scale,
                drawing: Drawing::Cam {
                    raw_min: lo,
                    raw_max: hi,
                    from: [h, w],
                    to: [input.0, input.1],
                    placement,
                },
            }
        }
        View::Signed | View::Unsigned => {
            let (h, w) = match *dims {
                [_, h, w] | [h, w] => (h, w),
                _ => (1, data.len()),
            };
            let values = reduced(data, dims, view);
            let p = shared.unwrap_or_else(|| clip_of(&values));
            let (scale, drawing) = if view == View::Signed {
                (Scale::Diverging { abs: p }, Drawing::Signed { clip: p })
            } else {
                (Scale::Sequential { min: 0.0, max: p }, Drawing::Unsigned { clip: p })
            };
            Prepared {
                values,
                h,
                w,
                scale,
                drawing,
            }
        }
    }
}

/// The coloured heatmap, each value a `zoom × zoom` block.
pub fn heatmap(p: &Prepared, zoom: u32) -> RgbImage {
    let mut img = RgbImage::new(p.w as u32 * zoom, p.h as u32 * zoom);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let v = p.values[(y / zoom) as usize * p.w + (x / zoom) as usize];
        *px = Rgb(p.scale.color(v));
    }
    img
}

/// The heatmap blended over the input shown in grey, alpha 0.5.
pub fn overlay(input: &DynamicImage, heat: &RgbImage) -> RgbImage {
    let grey = input
        .resize_exact(heat.width(), heat.height(), image::imageops::FilterType::Nearest)
        .to_luma8();
    let mut out = heat.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        let g = grey.get_pixel(x, y)[0] as f32;
        for c in 0..3 {
            px[c] = (0.5 * px[c] as f32 + 0.5 * g).round() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_keeps_constants_and_interpolates() {
        assert_eq!(bilinear(&[2.0; 4], 2, 2, 5, 5), vec![2.0; 25]);
        let up = bilinear(&[0.0, 1.0], 1, 2, 1, 4);
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn field_placement_puts_cells_at_their_centres() {
        // LeNet-5's relu2: 10 cells 2 px apart, the first centred on input pixel 4.5.
        let field = crate::models::Field {
            size: 14,
            stride: 2,
            offset: -2,
        };
        let p = Placement::of_field(&field);
        assert_eq!(p, Placement::Field { first: 4.5, step: 2.0 });
        let src: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let row = bilinear_placed(&src, 1, 10, 1, 28, p);
        // Before the first centre and after the last the edge values continue.
        assert_eq!(&row[..5], &[0.0; 5]);
        assert_eq!(row[5], 0.25);
        assert_eq!(row[6], 0.75);
        assert_eq!(row[22], 8.75);
        assert_eq!(&row[23..], &[9.0; 5]);
        // Stretching puts cell 0 at 0.9 and cell 9 at 26.1 instead.
        let stretched = bilinear(&src, 1, 10, 1, 28);
        assert!((stretched[14] - (14.0 - 0.9) / 2.8).abs() < 1e-5);
    }

    #[test]
    fn a_shared_scale_keeps_raw_cam_values() {
        let cam = [0.0, 0.5, 1.0, -1.0];
        let own = prepare(&cam, &[2, 2], View::Cam, (2, 2), Placement::Stretch);
        let shared = prepare_scaled(&cam, &[2, 2], View::Cam, (2, 2), Placement::Stretch, Some(4.0));
        assert_eq!(own.scale.range(), (0.0, 1.0));
        assert_eq!(shared.scale.range(), (0.0, 4.0));
        assert_eq!(shared.values, vec![0.0, 0.5, 1.0, 0.0]);
        assert_eq!(own_range(&cam, &[2, 2], View::Cam), 1.0);
    }

    #[test]
    fn percentile_and_reduction() {
        let v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(percentile_abs(&v, 0.99), 99.0);
        let d = [1.0, -3.0, 2.0, 1.0];
        assert_eq!(reduce(&d, 2, 1, 2, View::Signed), vec![3.0, -2.0]);
        assert_eq!(reduce(&d, 2, 1, 2, View::Unsigned), vec![2.0, 3.0]);
    }
}
