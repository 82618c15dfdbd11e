//! A dataset's examples, read once per build, and prepared for each model that analyses
//! its units over them.

use candle_core::{Device, Tensor};
use image::DynamicImage;
use rayon::prelude::*;

use crate::cache;
use crate::config::{Config, DatasetConfig, DatasetSource, Input, ModelConfig};
use crate::error::{Error, Result};

/// A dataset's label for one example, as the files give it.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// An IDX label: a class index.
    Index(usize),
    /// A folder dataset's sub-folder name: a class name.
    Name(String),
}

/// The examples of a dataset, in dataset order (index 0 = the first after `offset`).
pub enum Examples {
    /// IDX bytes: `count × rows × cols`, grey.
    Grey { rows: usize, cols: usize, bytes: Vec<u8> },
    /// Decoded image files.
    Images(Vec<DynamicImage>),
}

pub struct Dataset {
    pub examples: Examples,
    pub labels: Option<Vec<Label>>,
    /// Where each example comes from: `file#index` or the image's path under the folder.
    pub sources: Vec<String>,
    /// blake3 of the examples' bytes and labels (the cache's key for everything made from
    /// them).
    pub hash: String,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.sources.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// A dataset as one model sees it.
pub struct Prepared {
    /// `(N, C, H, W)`, normalised as the model's input.
    pub x: Tensor,
    /// `N × H × W × C` bytes, as the model sees them (resized, its channels), for pictures.
    pub pixels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Class indices of the model, when the dataset has labels.
    pub labels: Option<Vec<usize>>,
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.pixels.len() / (self.channels * self.height * self.width)
    }
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }
    /// Example `i`'s bytes, `H × W × C`.
    pub fn example(&self, i: usize) -> &[u8] {
        let n = self.channels * self.height * self.width;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// The part of `0..n` the config selects, or an error at `datasets[i].offset`.
fn window(cfg: &DatasetConfig, config: &Config, n: usize) -> Result<std::ops::Range<usize>> {
    if cfg.offset >= n {
        return Err(config.error(
            &format!("{}.offset", cfg.key),
            format!("is {} but the dataset has only {n} examples", cfg.offset),
        ));
    }
    let end = cfg.limit.map_or(n, |l| (cfg.offset + l).min(n));
    Ok(cfg.offset..end)
}

/// Reads a dataset's examples; errors name the file, or the config key and line.
pub fn load(cfg: &DatasetConfig, config: &Config) -> Result<Dataset> {
    let mut h = blake3::Hasher::new();
    h.update(format!("offset {} limit {:?}\n", cfg.offset, cfg.limit).as_bytes());
    match &cfg.source {
        DatasetSource::Idx { images, labels } => {
            let im = crate::data::idx::read(images)?;
            if im.dims.len() != 3 {
                return Err(Error::at(
                    images,
                    format!(
                        "expected an IDX array of images (count, rows, cols), found dimensions {:?}",
                        im.dims
                    ),
                ));
            }
            let (n, rows, cols) = (im.dims[0], im.dims[1], im.dims[2]);
            let r = window(cfg, config, n)?;
            let labels = match labels {
                None => None,
                Some(lp) => {
                    let lb = crate::data::idx::read(lp)?;
                    if lb.dims != [n] {
                        return Err(Error::at(
                            lp,
                            format!("{:?} labels for {n} images in {}", lb.dims, images.display()),
                        ));
                    }
                    h.update(&lb.data[r.clone()]);
                    Some(lb.data[r.clone()].iter().map(|&l| Label::Index(l as usize)).collect())
                }
            };
            let bytes = im.data[r.start * rows * cols..r.end * rows * cols].to_vec();
            h.update(format!("idx {rows}x{cols}\n").as_bytes());
            h.update(&bytes);
            let name = images
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            Ok(Dataset {
                examples: Examples::Grey { rows, cols, bytes },
                labels,
                sources: r.map(|i| format!("{name}#{i}")).collect(),
                hash: h.finalize().to_hex().to_string(),
            })
        }
        DatasetSource::Folder { dir } => {
            let mut files = Vec::new();
            for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
                let e = e.map_err(|e| Error::at(dir, format!("cannot read the folder: {e}")))?;
                let ext = e
                    .path()
                    .extension()
                    .and_then(|x| x.to_str())
                    .map(|x| x.to_ascii_lowercase());
                if e.file_type().is_file() && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
                    files.push(e.into_path());
                }
            }
            if files.is_empty() {
                return Err(config.error(
                    &format!("{}.images", cfg.key),
                    format!("the folder `{}` holds no PNG or JPEG image", dir.display()),
                ));
            }
            let r = window(cfg, config, files.len())?;
            let files = &files[r];
            let rel: Vec<String> = files
                .iter()
                .map(|f| f.strip_prefix(dir).unwrap_or(f).to_string_lossy().replace('\\', "/"))
                .collect();
            // Labelled when every image sits in a sub-folder: its first component.
            let labels = rel
                .iter()
                .map(|r| r.split_once('/').map(|(c, _)| Label::Name(c.to_string())))
                .collect::<Option<Vec<_>>>();
            let decoded = files
                .par_iter()
                .map(|f| {
                    let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
                    let img = crate::data::image::decode(&bytes, f)?;
                    Ok((cache::hash_bytes(&bytes), img))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut images = Vec::with_capacity(decoded.len());
            for (r, (hash, img)) in rel.iter().zip(decoded) {
                h.update(format!("{r} {hash}\n").as_bytes());
                images.push(img);
            }
            if labels.is_some() {
                h.update(b"labelled\n");
            }
            Ok(Dataset {
                examples: Examples::Images(images),
                labels,
                sources: rel,
                hash: h.finalize().to_hex().to_string(),
            })
        }
    }
}

/// The dataset as model `mc` sees it; `key` (`models[i].units.dataset`) locates errors.
pub fn prepare(ds: &Dataset, dcfg: &DatasetConfig, mc: &ModelConfig, config: &Config, key: &str) -> Result<Prepared> {
    let input: &Input = &mc.input;
    let (c, h, w) = (input.channels, input.height, input.width);
    let labels = match &ds.labels {
        None => None,
        Some(ls) => Some(
            ls.iter()
                .enumerate()
                .map(|(i, l)| match l {
                    Label::Index(k) if *k < mc.classes.len() => Ok(*k),
                    Label::Index(k) => Err(config.error(
                        key,
                        format!(
                            "example {i} of dataset `{}` ({}) has label {k}, but model `{}` has {} classes (0..{})",
                            dcfg.id,
                            ds.sources[i],
                            mc.id,
                            mc.classes.len(),
                            mc.classes.len() - 1
                        ),
                    )),
                    Label::Name(n) => mc.classes.iter().position(|c| c == n).ok_or_else(|| {
                        config.error(
                            key,
                            format!(
                                "example {i} of dataset `{}` ({}) is in sub-folder `{n}`, which is not a class of model `{}` (see {})",
                                dcfg.id,
                                ds.sources[i],
                                mc.id,
                                mc.classes_path.display()
                            ),
                        )
                    }),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    let n = ds.len();
    let mut pixels = Vec::with_capacity(n * c * h * w);
    match &ds.examples {
        Examples::Grey { rows, cols, bytes } => {
            if (*rows, *cols) != (h, w) {
                return Err(config.error(
                    key,
                    format!(
                        "the images of dataset `{}` are {rows}×{cols}, but model `{}` takes {h}×{w} (IDX images are not resized)",
                        dcfg.id, mc.id
                    ),
                ));
            }
            for &b in bytes {
                pixels.extend(std::iter::repeat_n(b, c));
            }
        }
        Examples::Images(images) => {
            let prepared = images
                .par_iter()
                .map(|img| {
                    let img = if img.width() as usize == w && img.height() as usize == h {
                        img.clone()
                    } else {
                        img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
                    };
                    if c == 1 {
                        img.to_luma8().into_raw()
                    } else {
                        img.to_rgb8().into_raw()
                    }
                })
                .collect::<Vec<_>>();
            for p in prepared {
                pixels.extend(p);
            }
        }
    }
    let hw = h * w;
    let mut data = vec![0f32; n * c * hw];
    for (i, chunk) in data.chunks_mut(c * hw).enumerate() {
        let px = &pixels[i * c * hw..(i + 1) * c * hw];
        for p in 0..hw {
            for ch in 0..c {
                chunk[ch * hw + p] = (px[p * c + ch] as f32 / 255.0 - input.mean[ch]) / input.std[ch];
            }
        }
    }
    let x = Tensor::from_vec(data, (n, c, h, w), &Device::Cpu)?;
    Ok(Prepared {
        x,
        pixels,
        channels: c,
        height: h,
        width: w,
        labels,
    })
}
