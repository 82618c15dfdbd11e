//! A reader for the IDX format of the MNIST files (optionally gzip-compressed).
//!
//! Layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions,
//! then each dimension as a big-endian u32, then the data in row-major order.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// An IDX array of unsigned bytes.
#[derive(Debug)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn read(path: &Path) -> Result<Idx> {
    let raw = std::fs::read(path).at_path(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::at(path, format!("not a valid gzip file: {e}")))?;
        out
    } else {
        raw
    };
    parse(&bytes).map_err(|m| Error::at(path, m))
}

pub fn parse(bytes: &[u8]) -> std::result::Result<Idx, String> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err("not an IDX file (bad magic number)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            bytes[2]
        ));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err("truncated IDX header".into());
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let n: usize = dims.iter().product();
    if bytes.len() - header != n {
        return Err(format!(
            "IDX dimensions {dims:?} need {n} bytes of data, found {}",
            bytes.len() - header
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// MNIST-style digits: `count` images of `rows × cols` bytes and their labels.
pub struct Digits {
    pub rows: usize,
    pub cols: usize,
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Digits {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.images[i * n..(i + 1) * n]
    }
}

fn find(dir: &Path, marker: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .at_path(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(marker))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| Error::at(dir, format!("no file named like `*{marker}*` in this folder")))
}

/// Reads the `*images-idx3-ubyte*` and `*labels-idx1-ubyte*` files of a folder.
pub fn read_digits(dir: &Path) -> Result<Digits> {
    let ip = find(dir, "images-idx3-ubyte")?;
    let lp = find(dir, "labels-idx1-ubyte")?;
    let images = read(&ip)?;
    let labels = read(&lp)?;
    if images.dims.len() != 3 {
        return Err(Error::at(
            &ip,
            format!("expected 3 dimensions (count, rows, cols), found {:?}", images.dims),
        ));
    }
    if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
        return Err(Error::at(
            &lp,
            format!(
                "{:?} labels for {} images in {}",
                labels.dims,
                images.dims[0],
                ip.display()
            ),
        ));
    }
    Ok(Digits {
        rows: images.dims[1],
        cols: images.dims[2],
        images: images.data,
        labels: labels.data,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_and_rejects() {
        let mut b = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        b.extend([1, 2, 3, 4, 5, 6]);
        let idx = super::parse(&b).unwrap();
        assert_eq!(idx.dims, vec![2, 3]);
        assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
        b.pop();
        assert!(super::parse(&b).unwrap_err().contains("need 6 bytes"));
        assert!(super::parse(&[1, 2, 3, 4]).unwrap_err().contains("magic"));
    }
}
