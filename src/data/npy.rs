//! Writing `.npy` files (NumPy format 1.0, little-endian f32) in one buffered write.
//! candle's own writer issues a system call per element, which made writing the arrays
//! a fifth of a build's time.

use std::io::Write;
use std::path::Path;

use candle_core::{DType, Tensor};

use crate::error::{Error, IoContext, Result};

/// The bytes of an `.npy` file holding `data` with `shape` (C order).
pub fn encode(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: String = shape.iter().map(|d| format!("{d}, ")).collect();
    let dims = if shape.len() == 1 {
        dims.trim_end().to_string()
    } else {
        dims.trim_end_matches(", ").to_string()
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a tensor (any float dtype, stored as f32) as `.npy`.
pub fn write(t: &Tensor, path: &Path) -> Result<()> {
    let data = t
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()
        .map_err(|e| Error::at(path, format!("cannot write npy: {e}")))?;
    let bytes = encode(t.dims(), &data);
    let mut f = std::fs::File::create(path).at_path(path)?;
    f.write_all(&bytes).at_path(path)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn round_trips_through_candle() {
        let dir = tempfile::tempdir().unwrap();
        for shape in [vec![7], vec![2, 3], vec![1, 4, 5], vec![]] {
            let n: usize = shape.iter().product();
            let t = Tensor::from_vec(
                (0..n).map(|i| i as f32 * 0.5 - 1.0).collect::<Vec<_>>(),
                shape.as_slice(),
                &Device::Cpu,
            )
            .unwrap();
            let p = dir.path().join("a.npy");
            super::write(&t, &p).unwrap();
            let back = Tensor::read_npy(&p).unwrap();
            assert_eq!(back.dims(), t.dims());
            assert_eq!(
                back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
            let bytes = std::fs::read(&p).unwrap();
            let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hl) % 64, 0);
        }
    }
}
