//! Loading images and turning them into model input.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage, ImageReader, Limits};

use crate::config::Input;
use crate::error::{Error, IoContext, Result};

/// Largest image side we accept; a header claiming more is refused before any allocation.
const MAX_SIDE: u32 = 16384;

fn reader(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    let mut r = ImageReader::open(path)
        .at_path(path)?
        .with_guessed_format()
        .at_path(path)?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(1 << 30);
    r.limits(limits);
    Ok(r)
}

fn bad(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::at(path, format!("cannot read the image: {e}"))
}

/// The number of colour channels (1 for grey, 3 for colour) and the size, from the header.
pub fn probe(path: &Path) -> Result<(usize, (u32, u32))> {
    let dec = reader(path)?.into_decoder().map_err(|e| bad(path, e))?;
    use image::ImageDecoder;
    let (w, h) = dec.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(bad(
            path,
            format!("{w}×{h} pixels is larger than the {MAX_SIDE}-pixel limit"),
        ));
    }
    let channels = match dec.color_type().channel_count() {
        1 | 2 => 1, // grey, grey + alpha
        _ => 3,     // RGB, RGBA (alpha is dropped)
    };
    Ok((channels, (w, h)))
}

pub fn load(path: &Path) -> Result<DynamicImage> {
    reader(path)?.decode().map_err(|e| bad(path, e))
}

/// The image as the model sees it: converted to the model's channels and, when its size
/// differs from the model input, resized (stretched, bilinear) to exactly that size.
/// Returned as an 8-bit image (for display) and as the normalised `(1, C, H, W)` tensor
/// `(pixel/255 − mean)/std`.
pub fn prepare(img: &DynamicImage, input: &Input) -> Result<(DynamicImage, Tensor)> {
    let (h, w) = (input.height as u32, input.width as u32);
    let img = if img.width() == w && img.height() == h {
        img.clone()
    } else {
        img.resize_exact(w, h, FilterType::Triangle)
    };
    let (img, raw): (DynamicImage, Vec<u8>) = if input.channels == 1 {
        let g = img.to_luma8();
        let raw = g.as_raw().clone();
        (DynamicImage::ImageLuma8(g), raw)
    } else {
        let c = img.to_rgb8();
        let raw = c.as_raw().clone();
        (DynamicImage::ImageRgb8(c), raw)
    };
    let (c, hw) = (input.channels, (h * w) as usize);
    let mut data = vec![0f32; c * hw];
    // HWC bytes → CHW floats.
    for (i, px) in raw.chunks_exact(c).enumerate() {
        for ch in 0..c {
            data[ch * hw + i] = (px[ch] as f32 / 255.0 - input.mean[ch]) / input.std[ch];
        }
    }
    let t = Tensor::from_vec(data, (1, c, h as usize, w as usize), &Device::Cpu)?;
    Ok((img, t))
}
