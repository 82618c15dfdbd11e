//! Loading images and turning them into model input.

use std::io::Cursor;
use std::path::Path;

use candle_core::{Device, Tensor};
use image::{imageops::FilterType, DynamicImage, ImageReader, Limits};

use crate::error::{Error, IoContext, Result};
use crate::models::Input;

/// Largest image side we accept; a header claiming more is refused before any allocation.
const MAX_SIDE: u32 = 16384;
/// Most bytes a decoder may allocate, and the largest image file read.
const MAX_BYTES: u64 = 1 << 30;

fn bad(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::at(path, format!("cannot read the image: {e}"))
}

/// The number of colour channels the models see for this colour type: 1 for grey (with or
/// without alpha), 3 for colour (alpha is dropped).
pub fn channels(color: image::ColorType) -> usize {
    match color.channel_count() {
        1 | 2 => 1,
        _ => 3,
    }
}

/// Reads and decodes an image file (PNG or JPEG, by content), within the decoder limits.
pub fn load(path: &Path) -> Result<DynamicImage> {
    let len = std::fs::metadata(path).at_path(path)?.len();
    if len > MAX_BYTES {
        return Err(bad(
            path,
            format!("the file has {len} bytes, more than the {MAX_BYTES}-byte limit"),
        ));
    }
    let bytes = std::fs::read(path).at_path(path)?;
    decode(&bytes, path)
}

/// Decodes an image from its bytes (`path` only names it in errors). The size in the header
/// is checked before the decoder allocates anything: at most `MAX_SIDE` pixels a side and
/// `MAX_BYTES` decoded.
pub fn decode(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    use image::ImageDecoder;
    let mut r = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .at_path(path)?;
    if r.format().is_none() {
        return Err(bad(path, "not a PNG or JPEG file"));
    }
    // Width and height are checked below, with a clearer message than the decoder's.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_BYTES);
    r.limits(limits);
    let dec = r.into_decoder().map_err(|e| bad(path, e))?;
    let (w, h) = dec.dimensions();
    if w > MAX_SIDE || h > MAX_SIDE {
        return Err(bad(
            path,
            format!("the header claims {w}×{h} pixels, more than the {MAX_SIDE}-pixel limit per side"),
        ));
    }
    if w == 0 || h == 0 {
        return Err(bad(path, format!("the header claims {w}×{h} pixels")));
    }
    if dec.total_bytes() > MAX_BYTES {
        return Err(bad(
            path,
            format!(
                "{w}×{h} pixels would take {} bytes, more than the {MAX_BYTES}-byte limit",
                dec.total_bytes()
            ),
        ));
    }
    DynamicImage::from_decoder(dec).map_err(|e| bad(path, e))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG with a valid header claiming `w`×`h` grey pixels and one tiny data chunk.
    fn png_claiming(w: u32, h: u32) -> Vec<u8> {
        let chunk = |kind: &[u8; 4], data: &[u8]| {
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&crc.sum().to_be_bytes());
            c
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    fn decode_err(bytes: &[u8]) -> String {
        decode(bytes, Path::new("x.png")).unwrap_err().to_string()
    }

    #[test]
    fn huge_headers_are_refused_before_decoding() {
        let e = decode_err(&png_claiming(100_000, 100_000));
        assert!(e.contains("100000×100000") && e.contains("16384-pixel limit"), "{e}");
        let e = decode_err(&png_claiming(16_384, 16_385));
        assert!(e.contains("16384×16385"), "{e}");
    }

    #[test]
    fn what_is_not_an_image_is_named() {
        assert!(decode_err(b"").contains("not a PNG or JPEG"));
        assert!(decode_err(b"hello").contains("not a PNG or JPEG"));
        let e = decode_err(&png_claiming(3, 3));
        assert!(e.starts_with("x.png: cannot read the image"), "{e}");
    }
}
