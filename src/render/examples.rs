//! Pictures of dataset examples: grids of top examples, crops of receptive fields with
//! their context outlined, the class × unit matrix, and a scatter of thumbnails.

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use super::colormap::Scale;
use crate::data::dataset::Prepared;

const GAP: u32 = 2;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
/// Where a crop reaches past the input's border (the padding the layer saw).
const OUTSIDE: Rgb<u8> = Rgb([200, 200, 200]);
const OUTLINE: Rgb<u8> = Rgb([230, 30, 30]);

/// A box of input pixels, `[y0, y1) × [x0, x1)`; it may reach outside the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Region {
    pub y0: i64,
    pub y1: i64,
    pub x0: i64,
    pub x1: i64,
}

/// Example `i` as an RGB picture at the model's input size.
pub fn example(p: &Prepared, i: usize) -> RgbImage {
    let px = p.example(i);
    let (w, h, c) = (p.width as u32, p.height as u32, p.channels);
    RgbImage::from_fn(w, h, |x, y| {
        let k = (y as usize * p.width + x as usize) * c;
        if c == 1 {
            Rgb([px[k]; 3])
        } else {
            Rgb([px[k], px[k + 1], px[k + 2]])
        }
    })
}

/// Resizes to `side` on the longer side: blocky when enlarging (small inputs keep their
/// pixels), smooth when shrinking (so no pixel is dropped).
pub fn fit(img: &RgbImage, side: u32) -> RgbImage {
    let long = img.width().max(img.height()).max(1);
    let (w, h) = ((img.width() * side / long).max(1), (img.height() * side / long).max(1));
    let filter = if side >= long {
        FilterType::Nearest
    } else {
        FilterType::Triangle
    };
    imageops::resize(img, w, h, filter)
}

/// The part of `img` inside `r`, with what lies outside the input drawn grey.
pub fn crop(img: &RgbImage, r: Region) -> RgbImage {
    let (w, h) = ((r.x1 - r.x0).max(1) as u32, (r.y1 - r.y0).max(1) as u32);
    RgbImage::from_fn(w, h, |x, y| {
        let (sx, sy) = (r.x0 + x as i64, r.y0 + y as i64);
        if sx >= 0 && sy >= 0 && (sx as u32) < img.width() && (sy as u32) < img.height() {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            OUTSIDE
        }
    })
}

/// `img` enlarged to `side` with `r` outlined (clipped to the picture).
pub fn outlined(img: &RgbImage, r: Region, side: u32) -> RgbImage {
    let mut big = fit(img, side);
    let sx = big.width() as f64 / img.width() as f64;
    let sy = big.height() as f64 / img.height() as f64;
    let clamp = |v: f64, hi: u32| v.round().clamp(0.0, (hi - 1) as f64) as u32;
    let (x0, x1) = (
        clamp(r.x0 as f64 * sx, big.width()),
        clamp(r.x1 as f64 * sx - 1.0, big.width()),
    );
    let (y0, y1) = (
        clamp(r.y0 as f64 * sy, big.height()),
        clamp(r.y1 as f64 * sy - 1.0, big.height()),
    );
    for t in 0..2u32 {
        for x in x0..=x1 {
            for y in [y0.saturating_add(t).min(y1), y1.saturating_sub(t).max(y0)] {
                big.put_pixel(x, y, OUTLINE);
            }
        }
        for y in y0..=y1 {
            for x in [x0.saturating_add(t).min(x1), x1.saturating_sub(t).max(x0)] {
                big.put_pixel(x, y, OUTLINE);
            }
        }
    }
    big
}

/// Pictures in rows of `cols`, each in a `cell × cell` box, centred.
pub fn grid(cells: &[RgbImage], cols: usize, cell: u32) -> RgbImage {
    let cols = cols.clamp(1, cells.len().max(1));
    let rows = cells.len().div_ceil(cols).max(1);
    let mut out = RgbImage::from_pixel(
        cols as u32 * (cell + GAP) - GAP,
        rows as u32 * (cell + GAP) - GAP,
        WHITE,
    );
    for (k, c) in cells.iter().enumerate() {
        let (gx, gy) = ((k % cols) as u32 * (cell + GAP), (k / cols) as u32 * (cell + GAP));
        let (ox, oy) = (
            (cell.saturating_sub(c.width())) / 2,
            (cell.saturating_sub(c.height())) / 2,
        );
        imageops::overlay(&mut out, c, (gx + ox) as i64, (gy + oy) as i64);
    }
    out
}

/// Rows × columns of values drawn as `cw × ch` cells on one scale.
pub fn matrix(values: &[f32], rows: usize, cols: usize, cw: u32, ch: u32, scale: &Scale) -> RgbImage {
    let mut img = RgbImage::new((cols as u32 * cw).max(1), (rows as u32 * ch).max(1));
    for r in 0..rows {
        for c in 0..cols {
            let colour = Rgb(scale.color(values[r * cols + c]));
            for y in 0..ch {
                for x in 0..cw {
                    img.put_pixel(c as u32 * cw + x, r as u32 * ch + y, colour);
                }
            }
        }
    }
    img
}

/// Thumbnails of examples at their 2-D positions on a `size × size` canvas; where
/// thumbnails would overlap, the first in dataset order is kept (one per grid cell).
pub fn scatter(points: &[f32], thumbs: &dyn Fn(usize) -> RgbImage, size: u32, thumb: u32) -> RgbImage {
    let n = points.len() / 2;
    let mut out = RgbImage::from_pixel(size, size, WHITE);
    if n == 0 {
        return out;
    }
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for p in points.chunks(2) {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let span = |a: usize| (hi[a] - lo[a]).max(f32::MIN_POSITIVE);
    let cells = (size / thumb).max(1);
    let mut taken = vec![false; (cells * cells) as usize];
    for i in 0..n {
        let fx = (points[2 * i] - lo[0]) / span(0);
        let fy = (points[2 * i + 1] - lo[1]) / span(1);
        let (cx, cy) = (
            ((fx * (cells - 1) as f32).round() as u32).min(cells - 1),
            ((fy * (cells - 1) as f32).round() as u32).min(cells - 1),
        );
        let slot = (cy * cells + cx) as usize;
        if taken[slot] {
            continue;
        }
        taken[slot] = true;
        let t = fit(&thumbs(i), thumb);
        imageops::overlay(&mut out, &t, (cx * thumb) as i64, (cy * thumb) as i64);
    }
    out
}
