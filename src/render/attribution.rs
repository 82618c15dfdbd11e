//! Drawing attribution maps, one pipeline for every image:
//!
//! - input-space maps (`C×H×W`): reduce the channels (unsigned view: max of |·|; signed
//!   view: sum), clip at the 99th percentile of |values|, colour with viridis from 0 to that
//!   percentile (unsigned) or blue–white–red from −p99 to +p99 (signed);
//! - class activation maps (`h×w`): ReLU, min–max normalisation to 0..1, bilinear
//!   upsampling to the input size, viridis;
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

/// Bilinear resampling of an `h × w` map to `oh × ow`, with pixel centres aligned
/// (`align_corners = false`, as OpenCV's `resize` and PyTorch's default do).
pub fn bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let mut out = vec![0f32; oh * ow];
    let sy = h as f32 / oh as f32;
    let sx = w as f32 / ow as f32;
    for y in 0..oh {
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(h - 1);
        for x in 0..ow {
            let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (w - 1) as f32);
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
    /// ReLU, min–max to 0..1 (raw range `raw_min … raw_max`), bilinear `from` → `to`.
    Cam {
        raw_min: f32,
        raw_max: f32,
        from: [usize; 2],
        to: [usize; 2],
    },
    /// Sum over channels, clipped at ±`clip` (the 99th percentile of |·|).
    Signed { clip: f32 },
    /// Max of |·| over channels, clipped at `clip` (the 99th percentile).
    Unsigned { clip: f32 },
}

/// Applies the pipeline above to a raw map. `dims` is `[c, h, w]` or `[h, w]`; `input`
/// is the model's input size `(H, W)`.
pub fn prepare(data: &[f32], dims: &[usize], view: View, input: (usize, usize)) -> Prepared {
    match view {
        View::Cam => {
            let (h, w) = (dims[dims.len() - 2], dims[dims.len() - 1]);
            let relu: Vec<f32> = data.iter().map(|v| v.max(0.0)).collect();
            let (lo, hi) = relu
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
            let norm: Vec<f32> = if hi > lo {
                relu.iter().map(|v| (v - lo) / (hi - lo)).collect()
            } else {
                vec![0.0; relu.len()]
            };
            Prepared {
                values: bilinear(&norm, h, w, input.0, input.1),
                h: input.0,
                w: input.1,
                scale: Scale::Sequential { min: 0.0, max: 1.0 },
                drawing: Drawing::Cam {
                    raw_min: lo,
                    raw_max: hi,
                    from: [h, w],
                    to: [input.0, input.1],
                },
            }
        }
        View::Signed | View::Unsigned => {
            let (c, h, w) = match *dims {
                [c, h, w] => (c, h, w),
                [h, w] => (1, h, w),
                _ => (1, 1, data.len()),
            };
            let values = reduce(data, c, h, w, view);
            let p = percentile_abs(&values, 0.99);
            let p = if p > 0.0 {
                p
            } else {
                values.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12)
            };
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
    fn percentile_and_reduction() {
        let v: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        assert_eq!(percentile_abs(&v, 0.99), 99.0);
        let d = [1.0, -3.0, 2.0, 1.0];
        assert_eq!(reduce(&d, 2, 1, 2, View::Signed), vec![3.0, -2.0]);
        assert_eq!(reduce(&d, 2, 1, 2, View::Unsigned), vec![2.0, 3.0]);
    }
}
