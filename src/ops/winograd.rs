//! 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray
//! 2015): each 2×2 block of outputs takes 16 multiplications per (input, output) channel
//! pair instead of 36. Input tiles of 4×4 are transformed (`Bᵀ d B`), multiplied with the
//! transformed kernel (`G g Gᵀ`, 16 matrices of O × C, made once per model) as 16 matrix
//! products, and transformed back (`Aᵀ m A`). The input gradient of such a convolution is
//! itself one (of the gradient, by the flipped, transposed kernel), so it runs the same way.
//! Transforms are exact up to rounding: results differ from the direct sum by a few units in
//! the last place, as PyTorch's own algorithms do from one another.

use rayon::prelude::*;

use candle_core::WithDType;

use super::bias::{epilogue, Act};
use super::pointwise::{gemm_serial, SendPtr};
use super::scratch::Scratch;

/// A convolution's kernel `(O, C, 3, 3)` transformed for the forward pass (16 × O × C) and
/// for the input gradient (16 × C × O, from the flipped, transposed kernel).
pub struct Kernel {
    o: usize,
    c: usize,
    data: Data,
}

enum Data {
    F32(Vec<f32>, Vec<f32>),
    F64(Vec<f64>, Vec<f64>),
}

/// The element types a [`Kernel`] holds.
pub trait Element: WithDType {
    fn of(k: &Kernel) -> Option<(&[Self], &[Self])>;
}

impl Element for f32 {
    fn of(k: &Kernel) -> Option<(&[f32], &[f32])> {
        match &k.data {
            Data::F32(f, b) => Some((f, b)),
            Data::F64(..) => None,
        }
    }
}

impl Element for f64 {
    fn of(k: &Kernel) -> Option<(&[f64], &[f64])> {
        match &k.data {
            Data::F64(f, b) => Some((f, b)),
            Data::F32(..) => None,
        }
    }
}

impl Kernel {
    /// From a kernel `(O, C, 3, 3)`; `None` for other shapes or dtypes.
    pub fn new(w: &candle_core::Tensor) -> candle_core::Result<Option<Kernel>> {
        let (o, c, kh, kw) = w.dims4()?;
        if (kh, kw) != (3, 3) {
            return Ok(None);
        }
        let data = match w.dtype() {
            candle_core::DType::F32 => {
                let v = w.flatten_all()?.to_vec1::<f32>()?;
                Data::F32(transform(&v, o, c), transform(&flip_transpose(&v, o, c), c, o))
            }
            candle_core::DType::F64 => {
                let v = w.flatten_all()?.to_vec1::<f64>()?;
                Data::F64(transform(&v, o, c), transform(&flip_transpose(&v, o, c), c, o))
            }
            _ => return Ok(None),
        };
        Ok(Some(Kernel { o, c, data }))
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.o, self.c)
    }
}

/// `(O, C, 3, 3)` → `(C, O, 3, 3)`, each 3×3 turned half a turn.
fn flip_transpose<T: WithDType>(k: &[T], o: usize, c: usize) -> Vec<T> {
    let mut t = vec![T::zero(); k.len()];
    for oi in 0..o {
        for ci in 0..c {
            for i in 0..9 {
                t[(ci * o + oi) * 9 + 8 - i] = k[(oi * c + ci) * 9 + i];
            }
        }
    }
    t
}

/// `G g Gᵀ` of every 3×3 of `(O, C, 3, 3)`, as 16 matrices `O × C` (entry ξ = 4·i + j).
fn transform<T: WithDType>(k: &[T], o: usize, c: usize) -> Vec<T> {
    let half = T::from_f64(0.5);
    let mut u = vec![T::zero(); 16 * o * c];
    for (p, g) in k.chunks_exact(9).enumerate() {
        // G g: 4 × 3.
        let mut t = [[T::zero(); 3]; 4];
        for j in 0..3 {
            let (a, b, cc) = (g[j], g[3 + j], g[6 + j]);
            t[0][j] = a;
            t[1][j] = (a + b + cc) * half;
            t[2][j] = (a - b + cc) * half;
            t[3][j] = cc;
        }
        for (i, row) in t.iter().enumerate() {
            let [a, b, cc] = *row;
            let v = [a, (a + b + cc) * half, (a - b + cc) * half, cc];
            for (j, &x) in v.iter().enumerate() {
                u[(4 * i + j) * o * c + p] = x;
            }
        }
    }
    u
}

/// Rows of tiles per batch of work: the transformed inputs and products of a batch stay
/// near 4 MiB each (f32).
fn chunk_rows(c: usize, o: usize, tw: usize, rows: usize) -> usize {
    ((1 << 20) / (16 * c.max(o) * tw).max(1)).clamp(1, rows.max(1))
}

/// How many tiles a call over `n` maps of `h × w` (with `pads`) has.
pub fn tiles(n: usize, h: usize, w: usize, [pt, pb, pl, pr]: [usize; 4]) -> usize {
    let (oh, ow) = ((h + pt + pb).saturating_sub(2), (w + pl + pr).saturating_sub(2));
    n * oh.div_ceil(2) * ow.div_ceil(2)
}

/// Whether the transforms pay for a call: enough tiles that the 16 products are not thin,
/// and enough channels that the products, not the transforms, are the work. Measured on
/// one core (docs/performance.md): with 64 channels the transforms make it 1.6–2.6×
/// slower than the direct path, with 128 it is even, from 256 it is 1.1–1.5× faster.
pub fn pays(tiles: usize, c: usize, o: usize) -> bool {
    tiles >= 64 && wide(c, o)
}

/// Whether a convolution has channels enough for [`pays`] ever to hold: only those keep a
/// transformed kernel.
pub fn wide(c: usize, o: usize) -> bool {
    c >= 256 && o >= 256
}

/// The convolution of `x` `(N, C, H, W)` by a transformed kernel `u` (16 × O × C) with
/// zero padding `[top, _, left, _]` giving an `oh × ow` output, then `post`'s bias and
/// activation. Work runs by batches of tile rows; in each, the input transform by channel,
/// the 16 products and the output transform by output channel run in parallel. The
/// transforms run along a row of tiles at once, so they vectorise.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // the loops walk several arrays in step, by tile
pub fn conv<T: WithDType>(
    x: &[T],
    (n, c, h, w): (usize, usize, usize, usize),
    u: &[T],
    o: usize,
    [pt, _pb, pl, _pr]: [usize; 4],
    (oh, ow): (usize, usize),
    post: Option<(&[T], Act)>,
) -> Vec<T> {
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let rows = n * th;
    let chunk = chunk_rows(c, o, tw, rows);
    // Not zeroed: the output transform writes every element of `y` (set_len below), the
    // input transform and the products every element of `v` and `m` that is read.
    let len = n * o * oh * ow;
    let mut y: Vec<T> = Vec::with_capacity(len);
    let mut v = Scratch::<T>::new(16 * c * chunk * tw);
    let mut m = Scratch::<T>::new(16 * o * chunk * tw);
    for r0 in (0..rows).step_by(chunk) {
        let nr = chunk.min(rows - r0);
        let nt = nr * tw;
        // Input transform: V[ξ][c][t], t = row · tw + tx.
        let vp = SendPtr(v.as_mut_ptr());
        (0..c).into_par_iter().for_each(|ci| {
            super::simd_with(|| {
                // One input row, zero-padded: column 2·tx + q of tile tx is `line[2·tx + q]`.
                let mut line = vec![vec![T::zero(); 2 * tw + 2]; 4];
                let mut d = vec![vec![T::zero(); tw]; 16];
                for lr in 0..nr {
                    let (i, ty) = ((r0 + lr) / th, (r0 + lr) % th);
                    let plane = &x[(i * c + ci) * h * w..(i * c + ci + 1) * h * w];
                    for (r, buf) in line.iter_mut().enumerate() {
                        buf.fill(T::zero());
                        let yy = (2 * ty + r) as isize - pt as isize;
                        if yy < 0 || yy >= h as isize {
                            continue;
                        }
                        let src = &plane[yy as usize * w..yy as usize * w + w];
                        // Input column xx lands at line index xx + left; columns past the
                        // last tile are not read.
                        let n = w.min(2 * tw + 2 - pl.min(2 * tw + 2));
                        buf[pl..pl + n].copy_from_slice(&src[..n]);
                    }
                    // Bᵀ d: rows combined, per column q, for every tile of the row.
                    for q in 0..4 {
                        for tx in 0..tw {
                            let (a0, a1, a2, a3) = (
                                line[0][2 * tx + q],
                                line[1][2 * tx + q],
                                line[2][2 * tx + q],
                                line[3][2 * tx + q],
                            );
                            d[q][tx] = a0 - a2;
                            d[4 + q][tx] = a1 + a2;
                            d[8 + q][tx] = a2 - a1;
                            d[12 + q][tx] = a1 - a3;
                        }
                    }
                    // (Bᵀ d) B: columns combined, per row r.
                    for r in 0..4 {
                        for tx in 0..tw {
                            let (b0, b1, b2, b3) = (d[4 * r][tx], d[4 * r + 1][tx], d[4 * r + 2][tx], d[4 * r + 3][tx]);
                            let e = [b0 - b2, b1 + b2, b2 - b1, b1 - b3];
                            for (q, &val) in e.iter().enumerate() {
                                // SAFETY: channel `ci`'s entries are this task's alone, inside `v`.
                                unsafe { *vp.get().add(((4 * r + q) * c + ci) * nt + lr * tw + tx) = val };
                            }
                        }
                    }
                }
            })
        });
        // The 16 products M[ξ] = U[ξ] · V[ξ], O × nt each.
        let mp = SendPtr(m.as_mut_ptr());
        let vr = &*v;
        (0..16).into_par_iter().for_each(|xi| {
            // SAFETY: product ξ writes its own O × nt block of `m`.
            unsafe {
                gemm_serial(
                    (o, nt, c),
                    mp.get().add(xi * o * nt),
                    nt,
                    &u[xi * o * c..(xi + 1) * o * c],
                    (c, 1),
                    &vr[xi * c * nt..(xi + 1) * c * nt],
                    (nt, 1),
                    false,
                )
            };
        });
        // Output transform, by output channel.
        let yp = SendPtr(y.as_mut_ptr());
        let mr = &*m;
        (0..o).into_par_iter().for_each(|oi| {
            super::simd_with(|| {
                let mut a = vec![vec![T::zero(); tw]; 8];
                let mut out = vec![vec![T::zero(); 2 * tw]; 2];
                for lr in 0..nr {
                    let (i, ty) = ((r0 + lr) / th, (r0 + lr) % th);
                    let at = |xi: usize| &mr[(xi * o + oi) * nt + lr * tw..(xi * o + oi) * nt + lr * tw + tw];
                    // Aᵀ m: 2 × 4 per tile.
                    for q in 0..4 {
                        let (m0, m1, m2, m3) = (at(q), at(4 + q), at(8 + q), at(12 + q));
                        for tx in 0..tw {
                            a[q][tx] = m0[tx] + m1[tx] + m2[tx];
                            a[4 + q][tx] = m1[tx] - m2[tx] - m3[tx];
                        }
                    }
                    // (Aᵀ m) A: 2 × 2 per tile, into two output rows.
                    for r in 0..2 {
                        for tx in 0..tw {
                            let (b0, b1, b2, b3) = (a[4 * r][tx], a[4 * r + 1][tx], a[4 * r + 2][tx], a[4 * r + 3][tx]);
                            out[r][2 * tx] = b0 + b1 + b2;
                            out[r][2 * tx + 1] = b1 - b2 - b3;
                        }
                        let yy = 2 * ty + r;
                        if yy < oh {
                            let base = ((i * o + oi) * oh + yy) * ow;
                            // SAFETY: output channel `oi`'s planes are this task's alone.
                            let dst = unsafe { std::slice::from_raw_parts_mut(yp.get().add(base), ow) };
                            dst.copy_from_slice(&out[r][..ow]);
                        }
                    }
                }
            })
        });
    }
    // SAFETY: every tile row of every image was transformed back into `y`, each tile's
    // 2 × 2 outputs inside the map, so every element is written.
    unsafe { y.set_len(len) };
    if let Some((b, act)) = post {
        y.par_chunks_mut(oh * ow).enumerate().for_each(|(p, plane)| {
            let ch = p % o;
            epilogue(plane, &b[ch..ch + 1], 1, oh * ow, act);
        });
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_diff;
    use candle_core::{Device, Tensor};

    /// Against the direct convolution (candle's, on explicitly padded input), in f64 and
    /// f32, forward and the input gradient's form (the flipped, transposed kernel), on odd
    /// sizes, batches, several batches of tile rows and asymmetric padding.
    #[test]
    fn matches_the_direct_convolution() {
        let dev = Device::Cpu;
        for &(n, c, o, h, w, pad) in &[
            (1, 3, 4, 9, 7, [1, 1, 1, 1]),
            (2, 5, 3, 8, 11, [0, 1, 2, 0]),
            (1, 2, 2, 5, 5, [2, 2, 2, 2]),
            (3, 4, 6, 1, 12, [1, 1, 0, 0]),
            (1, 17, 300, 30, 40, [1, 1, 1, 1]),
        ] {
            let x = Tensor::randn(0f64, 1.0, (n, c, h, w), &dev).unwrap();
            let k = Tensor::randn(0f64, 1.0, (o, c, 3, 3), &dev).unwrap();
            let padded = x
                .pad_with_zeros(2, pad[0], pad[1])
                .unwrap()
                .pad_with_zeros(3, pad[2], pad[3])
                .unwrap();
            let want = padded.conv2d(&k, 0, 1, 1, 1).unwrap();
            let (_, _, oh, ow) = want.dims4().unwrap();
            let kernel = Kernel::new(&k).unwrap().unwrap();
            let (fwd, back) = f64::of(&kernel).unwrap();
            let xs = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let got = conv(&xs, (n, c, h, w), fwd, o, pad, (oh, ow), None);
            let got = Tensor::from_vec(got, (n, o, oh, ow), &dev).unwrap();
            assert!(max_diff(&got, &want) < 1e-11, "forward {n} {c} {o} {h} {w} {pad:?}");
            // The transposed kernel: a convolution from o channels to c.
            let y = Tensor::randn(0f64, 1.0, (n, o, h, w), &dev).unwrap();
            let kt = k
                .transpose(0, 1)
                .unwrap()
                .contiguous()
                .unwrap()
                .flip(&[2, 3])
                .unwrap()
                .contiguous()
                .unwrap();
            let want = y
                .pad_with_zeros(2, 1, 1)
                .unwrap()
                .pad_with_zeros(3, 1, 1)
                .unwrap()
                .conv2d(&kt, 0, 1, 1, 1)
                .unwrap();
            let ys = y.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            let got = conv(&ys, (n, o, h, w), back, c, [1; 4], (h, w), None);
            let got = Tensor::from_vec(got, (n, c, h, w), &dev).unwrap();
            assert!(max_diff(&got, &want) < 1e-11, "transposed {n} {c} {o} {h} {w}");
            // f32: within rounding of the f64 result.
            let k32 = Kernel::new(&k.to_dtype(candle_core::DType::F32).unwrap())
                .unwrap()
                .unwrap();
            let x32 = xs.iter().map(|&v| v as f32).collect::<Vec<_>>();
            let got32 = conv(&x32, (n, c, h, w), f32::of(&k32).unwrap().0, o, pad, (oh, ow), None);
            let want = padded
                .conv2d(&k, 0, 1, 1, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let scale = want.iter().fold(0f64, |a, &b| a.max(b.abs()));
            let err = got32
                .iter()
                .zip(&want)
                .fold(0f64, |a, (&g, &t)| a.max((g as f64 - t).abs()));
            assert!(err / scale < 1e-5, "f32 {n} {c} {o}: {err} of {scale}");
        }
    }
}
