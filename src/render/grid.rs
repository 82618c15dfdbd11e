//! Arrays to pictures: grids of feature maps or filters, strips, matrices, colour bars.
//! Every picture uses one colour scale for all its cells so cells can be compared.

use std::io::BufWriter;
use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, Rgb, RgbImage};

use super::colormap::Scale;
use crate::error::{Error, IoContext, Result};

const GAP: u32 = 2;
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);

/// `count` maps of `h × w` values (row-major, one after another) in a grid of `cols`
/// columns, each value drawn as a `zoom × zoom` block.
pub fn maps(data: &[f32], count: usize, h: usize, w: usize, cols: usize, zoom: u32, scale: &Scale) -> RgbImage {
    maps_each(data, count, h, w, cols, zoom, |_| *scale)
}

/// Where the maps of a grid drawn by [`maps`] are, for labelling them on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub count: usize,
    pub cols: usize,
    /// One map's size in pixels, and the picture's.
    pub cell: [u32; 2],
    pub size: [u32; 2],
}

impl Layout {
    pub fn of(count: usize, h: usize, w: usize, cols: usize, zoom: u32) -> Layout {
        let cols = cols.clamp(1, count.max(1));
        let rows = count.div_ceil(cols);
        let (cw, ch) = (w as u32 * zoom, h as u32 * zoom);
        Layout {
            count,
            cols,
            cell: [cw, ch],
            size: [
                (cols as u32 * (cw + GAP) - GAP).max(1),
                (rows as u32 * (ch + GAP)).saturating_sub(GAP).max(1),
            ],
        }
    }

    /// The top-left corner of map `m`, in pixels.
    pub fn corner(&self, m: usize) -> (u32, u32) {
        (
            (m % self.cols) as u32 * (self.cell[0] + GAP),
            (m / self.cols) as u32 * (self.cell[1] + GAP),
        )
    }
}

/// [`maps`] with a scale per map (`scale_of(m)`).
pub fn maps_each(
    data: &[f32],
    count: usize,
    h: usize,
    w: usize,
    cols: usize,
    zoom: u32,
    scale_of: impl Fn(usize) -> Scale,
) -> RgbImage {
    let cols = cols.clamp(1, count.max(1));
    let rows = count.div_ceil(cols);
    let (cw, ch) = (w as u32 * zoom, h as u32 * zoom);
    let width = cols as u32 * (cw + GAP) - GAP;
    let height = (rows as u32 * (ch + GAP)).saturating_sub(GAP).max(1);
    let mut img = RgbImage::from_pixel(width.max(1), height, BACKGROUND);
    for m in 0..count {
        let (gx, gy) = ((m % cols) as u32 * (cw + GAP), (m / cols) as u32 * (ch + GAP));
        let scale = scale_of(m);
        for y in 0..h {
            for x in 0..w {
                let c = Rgb(scale.color(data[m * h * w + y * w + x]));
                for dy in 0..zoom {
                    for dx in 0..zoom {
                        img.put_pixel(gx + x as u32 * zoom + dx, gy + y as u32 * zoom + dy, c);
                    }
                }
            }
        }
    }
    img
}

/// A zoom that makes an `h × w` map about `target` pixels on its longer side.
pub fn zoom_for(h: usize, w: usize, target: u32) -> u32 {
    (target / h.max(w).max(1) as u32).max(1)
}

/// One row of cells, one per value: the fully connected layers' activations.
pub fn strip(values: &[f32], cell: u32, height: u32, scale: &Scale) -> RgbImage {
    let mut img = RgbImage::new((values.len() as u32 * cell).max(1), height);
    for (i, &v) in values.iter().enumerate() {
        let c = Rgb(scale.color(v));
        for x in 0..cell {
            for y in 0..height {
                img.put_pixel(i as u32 * cell + x, y, c);
            }
        }
    }
    img
}

/// A horizontal colour bar for a scale.
pub fn colorbar(scale: &Scale, width: u32, height: u32) -> RgbImage {
    let mut img = RgbImage::new(width, height);
    for x in 0..width {
        let c = Rgb(scale.at(x as f64 / (width - 1).max(1) as f64));
        for y in 0..height {
            img.put_pixel(x, y, c);
        }
    }
    img
}

/// Writes a PNG with fixed encoder settings, so the same pixels give the same bytes.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path).at_path(path)?;
    PngEncoder::new_with_quality(BufWriter::new(file), CompressionType::Fast, FilterType::Adaptive)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::at(path, format!("cannot write PNG: {e}")))
}

/// Writes any 8-bit image (grey or colour) as PNG with the same fixed settings.
pub fn save_dynamic_png(img: &image::DynamicImage, path: &Path) -> Result<()> {
    match img {
        image::DynamicImage::ImageLuma8(g) => {
            let file = std::fs::File::create(path).at_path(path)?;
            PngEncoder::new_with_quality(BufWriter::new(file), CompressionType::Fast, FilterType::Adaptive)
                .write_image(g.as_raw(), g.width(), g.height(), image::ExtendedColorType::L8)
                .map_err(|e| Error::at(path, format!("cannot write PNG: {e}")))
        }
        other => save_png(&other.to_rgb8(), path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_geometry() {
        let s = Scale::fit(&[0.0, 1.0]);
        let img = maps(&[0.0; 6 * 4], 6, 2, 2, 4, 3, &s);
        // 4 columns of 6 px with 2 px gaps; 2 rows.
        assert_eq!((img.width(), img.height()), (4 * 6 + 3 * 2, 2 * 6 + 2));
        assert_eq!(zoom_for(28, 28, 84), 3);
        let l = Layout::of(6, 2, 2, 4, 3);
        assert_eq!(l.size, [img.width(), img.height()]);
        assert_eq!((l.corner(0), l.corner(5)), ((0, 0), (8, 8)));
    }
}
