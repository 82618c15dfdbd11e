//! A writer for PyTorch's zip checkpoint format, as `torch.save(state_dict, path)` writes it
//! (PyTorch ≥ 1.6), so the tests can check the `.pth` reader without PyTorch:
//!
//! - `archive/data.pkl`: a protocol-2 pickle of a `collections.OrderedDict` whose values are
//!   `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
//!   backward_hooks)`, each storage a persistent id `('storage', torch.FloatStorage, key,
//!   'cpu', numel)`;
//! - `archive/data/<key>`: the storage's raw little-endian numbers;
//! - `archive/version`: `3\n`, and `archive/byteorder`: `little`.
//!
//! Only contiguous f32 and f64 tensors are written (one storage per tensor, offset 0).

use std::io::Write;
use std::path::Path;

use candle_core::{DType, Tensor};

/// Pickle opcodes used here (see Python's `pickletools`).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const REDUCE: u8 = b'R';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINPERSID: u8 = b'Q';
    pub const NEWFALSE: u8 = 0x89;
    pub const SETITEMS: u8 = b'u';
    pub const STOP: u8 = b'.';
}

/// A protocol-2 pickle under construction.
struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(op::GLOBAL);
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn str(&mut self, s: &str) {
        self.0.push(op::BINUNICODE);
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: usize) {
        if v < 0x100 {
            self.0.extend_from_slice(&[op::BININT1, v as u8]);
        } else if v < 0x1_0000 {
            self.0.push(op::BININT2);
            self.0.extend_from_slice(&(v as u16).to_le_bytes());
        } else if v < 0x8000_0000 {
            self.0.push(op::BININT);
            self.0.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.0.extend_from_slice(&[op::LONG1, 8]);
            self.0.extend_from_slice(&(v as i64).to_le_bytes());
        }
    }
    fn tuple_of(&mut self, values: &[usize]) {
        self.0.push(op::MARK);
        for &v in values {
            self.int(v);
        }
        self.0.push(op::TUPLE);
    }
    /// `collections.OrderedDict()`.
    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
    }
}

/// The pickle of `data.pkl` for tensors stored as `data/0`, `data/1`, ...
fn state_dict_pickle(tensors: &[(String, Tensor)]) -> Vec<u8> {
    let mut p = Pickle(vec![op::PROTO, 2]);
    p.ordered_dict();
    p.0.push(op::MARK);
    for (key, (name, t)) in tensors.iter().enumerate() {
        p.str(name);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.0.push(op::MARK);
        // The storage, by persistent id.
        p.0.push(op::MARK);
        p.str("storage");
        let storage = match t.dtype() {
            DType::F64 => "DoubleStorage",
            _ => "FloatStorage",
        };
        p.global("torch", storage);
        p.str(&key.to_string());
        p.str("cpu");
        p.int(t.elem_count());
        p.0.push(op::TUPLE);
        p.0.push(op::BINPERSID);
        // Offset, size, stride (row-major), requires_grad, backward hooks.
        p.int(0);
        let dims = t.dims();
        p.tuple_of(dims);
        let mut stride = vec![1; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * dims[i + 1];
        }
        p.tuple_of(&stride);
        p.0.push(op::NEWFALSE);
        p.ordered_dict();
        p.0.push(op::TUPLE);
        p.0.push(op::REDUCE);
    }
    p.0.push(op::SETITEMS);
    p.0.push(op::STOP);
    p.0
}

fn raw_bytes(t: &Tensor) -> Vec<u8> {
    let flat = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        DType::F64 => flat
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        dt => panic!("the .pth writer only writes f32 and f64 tensors, not {dt:?}"),
    }
}

/// Writes `tensors` (in this order) as a zip-format PyTorch state dict.
pub fn write_pth(path: &Path, tensors: &[(String, Tensor)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&state_dict_pickle(tensors)).unwrap();
    for (key, (_, t)) in tensors.iter().enumerate() {
        zip.start_file(format!("archive/data/{key}"), stored).unwrap();
        zip.write_all(&raw_bytes(t)).unwrap();
    }
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.start_file("archive/byteorder", stored).unwrap();
    zip.write_all(b"little").unwrap();
    zip.finish().unwrap();
}

/// The first bytes of a legacy (pre-1.6) `torch.save` file: a pickle (protocol 2) of
/// PyTorch's magic number 0x1950a86a20f9469cfc6c, not a zip archive.
pub fn legacy_pth_bytes() -> Vec<u8> {
    let mut b = vec![op::PROTO, 2, op::LONG1, 10];
    b.extend_from_slice(&0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10]);
    b.push(op::STOP);
    b
}
