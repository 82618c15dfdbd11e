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
/// and enough channels that the products, not the transforms, are the work (their cost
/// grows with C + O, the products' with C · O). Measured on one core (docs/performance.md):
/// from 64 tiles and 64 input and output channels it is 1.2–1.7× faster than the direct
/// path; with 48 tiles only at 512 channels (1.5× faster; at 64–128 channels 0.6–0.95× as
/// fast, at 256 1.0–1.2×), and with 16 (7², one image) not even there.
pub fn pays(tiles: usize, c: usize, o: usize) -> bool {
    wide(c, o) && (tiles >= 64 || (tiles >= 48 && c.min(o) >= 512))
}

/// Whether a convolution has channels enough for [`pays`] ever to hold: only those keep a
/// transformed kernel.
pub fn wide(c: usize, o: usize) -> bool {
    c >= 64 && o >= 64
}

/// The convolution of `x` `(N, C, H, W)` by a transformed kernel `u` (16 × O × C) with
/// zero padding `[top, _, left, _]` giving an `oh × ow` output, then `post`'s bias and
/// activation. Work runs by batches of tile rows; in each, the input transform by channel,
/// the 16 products and the output transform by output channel run in parallel. Each
/// transform runs over all the tiles of an image in the batch at once, as flat loops over
/// contiguous arrays: rows of 4–28 tiles are too short for a vectorised loop (LLVM's takes
/// 32 elements at a time and leaves shorter rows to its scalar remainder).
#[allow(clippy::too_many_arguments)]
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
        // The batch's tile rows by image: (image, first tile row, rows, first tile).
        let mut segments = Vec::new();
        let mut lr = 0;
        while lr < nr {
            let (i, ty) = ((r0 + lr) / th, (r0 + lr) % th);
            let len = (th - ty).min(nr - lr);
            segments.push((i, ty, len, lr * tw));
            lr += len;
        }
        // Input transform: V[ξ][c][t], t = row · tw + tx.
        let vp = SendPtr(v.as_mut_ptr());
        (0..c).into_par_iter().for_each_init(Vec::new, |buf, ci| {
            for &(i, ty, len, at) in &segments {
                let plane = &x[(i * c + ci) * h * w..(i * c + ci + 1) * h * w];
                // SAFETY: channel `ci`'s entries are this task's alone, inside `v`.
                let dst: [&mut [T]; 16] = std::array::from_fn(|xi| unsafe {
                    std::slice::from_raw_parts_mut(vp.get().add((xi * c + ci) * nt + at), len * tw)
                });
                let rows = (plane, (h, w), (2 * ty) as isize - pt as isize, pl, (len, tw));
                input_transform_best(buf, rows, dst);
            }
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
        // Output transform, by output channel, then the bias and activation.
        let yp = SendPtr(y.as_mut_ptr());
        let mr = &*m;
        (0..o).into_par_iter().for_each_init(Vec::new, |buf, oi| {
            for &(i, ty, len, at) in &segments {
                let mx: [&[T]; 16] = std::array::from_fn(|xi| &mr[(xi * o + oi) * nt + at..][..len * tw]);
                // Output rows 2·ty .. 2·(ty + len), within the map.
                let (y0, y1) = (2 * ty * ow, (2 * (ty + len)).min(oh) * ow);
                // SAFETY: output channel `oi`'s planes are this task's alone.
                let dst = unsafe { std::slice::from_raw_parts_mut(yp.get().add((i * o + oi) * oh * ow + y0), y1 - y0) };
                output_transform_best(buf, &mx, (len, tw), ow, dst);
                if let Some((b, act)) = post {
                    epilogue(dst, &b[oi..oi + 1], 1, dst.len(), act);
                }
            }
        });
    }
    // SAFETY: every tile row of every image was transformed back into `y`, each tile's
    // 2 × 2 outputs inside the map, so every element is written.
    unsafe { y.set_len(len) };
    y
}

/// One channel's rows of tiles for [`input_transform`]: the plane, its size, the first
/// input row (negative: padding), the left padding, and (rows of tiles, tiles per row).
type InputRows<'a, T> = (&'a [T], (usize, usize), isize, usize, (usize, usize));

/// [`input_transform`], compiled with AVX2 where the CPU has it. (Not through
/// `ops::simd_with`: LLVM did not inline a closure this large into its AVX2 function.)
fn input_transform_best<T: WithDType>(buf: &mut Vec<T>, rows: InputRows<T>, dst: [&mut [T]; 16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<T: WithDType>(buf: &mut Vec<T>, rows: InputRows<T>, dst: [&mut [T]; 16]) {
            input_transform(buf, rows, dst)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(buf, rows, dst) };
    }
    input_transform(buf, rows, dst)
}

/// `Bᵀ d B` of `len` rows of `tw` tiles of one channel's `plane` (`h × w`), whose first
/// input row is `top` (negative: padding) and first input column `−pl`, into `dst[ξ]`
/// (`len · tw` each). Each input row is padded, split into even and odd columns and
/// combined across (`d B`: `[d0 − d2, d1 + d2, d2 − d1, d1 − d3]` of a tile's columns),
/// once for the two rows of tiles that share it; then rows are combined down (`Bᵀ ·`).
#[inline(always)]
fn input_transform<T: WithDType>(
    buf: &mut Vec<T>,
    (plane, (h, w), top, pl, (len, tw)): InputRows<T>,
    dst: [&mut [T]; 16],
) {
    let (nrow, wp, s) = (2 * len + 2, 2 * tw + 2, tw + 1);
    // Padded rows (`nrow × wp`), their even and odd columns (`nrow × s`, and one to spare
    // for the last `q + 1`), the row combinations (4 × `nrow × s`), the same without each
    // row's last column, by rows of even and odd index (4 × 2 × `(len + 1) × tw`).
    let (np, ns, nc) = (nrow * wp, nrow * s, (len + 1) * tw);
    buf.resize(np + 2 * (ns + 1) + 4 * ns + 8 * nc, T::zero());
    let (p, rest) = buf.split_at_mut(np);
    let (e, rest) = rest.split_at_mut(ns + 1);
    let (od, rest) = rest.split_at_mut(ns + 1);
    let (hs, hc) = rest.split_at_mut(4 * ns);
    for (r, line) in p.chunks_exact_mut(wp).enumerate() {
        let yy = top + r as isize;
        if !(0..h as isize).contains(&yy) {
            line.fill(T::zero());
            continue;
        }
        // Input column xx lands at index xx + pl; columns past the last tile are not read.
        let src = &plane[yy as usize * w..][..w];
        let k = w.min(wp.saturating_sub(pl));
        let lo = pl.min(wp);
        line[..lo].fill(T::zero());
        line[lo..lo + k].copy_from_slice(&src[..k]);
        line[lo + k..].fill(T::zero());
    }
    // Even and odd columns: rows of `s`, as the padded rows are `2 · s` wide.
    for ((e, od), pair) in e.iter_mut().zip(od.iter_mut()).zip(p.chunks_exact(2)) {
        *e = pair[0];
        *od = pair[1];
    }
    e[ns] = T::zero();
    od[ns] = T::zero();
    // `d B` over every row at once (each row's last entry mixes it with the next row's
    // first: dropped below).
    {
        let (h0, r) = hs.split_at_mut(ns);
        let (h1, r) = r.split_at_mut(ns);
        let (h2, h3) = r.split_at_mut(ns);
        let (e0, e1, o0, o1) = (&e[..ns], &e[1..ns + 1], &od[..ns], &od[1..ns + 1]);
        for q in 0..ns {
            h0[q] = e0[q] - e1[q];
            h1[q] = o0[q] + e1[q];
            h2[q] = e1[q] - o0[q];
            h3[q] = o0[q] - o1[q];
        }
    }
    // Rows `tw` long, those of even index then those of odd index, per combination.
    for j in 0..4 {
        let src = &hs[j * ns..(j + 1) * ns];
        let (even, odd) = hc[2 * j * nc..(2 * j + 2) * nc].split_at_mut(nc);
        for (r, row) in src.chunks_exact(s).enumerate() {
            let half = if r % 2 == 0 { &mut *even } else { &mut *odd };
            half[(r / 2) * tw..][..tw].copy_from_slice(&row[..tw]);
        }
    }
    // `Bᵀ ·`: tile row `lr` has input rows 2·lr, 2·lr + 1 (`even`, `odd` at lr) and
    // 2·lr + 2, 2·lr + 3 (at lr + 1, `tw` further on).
    let l = len * tw;
    for j in 0..4 {
        let (ev, od) = hc[2 * j * nc..(2 * j + 2) * nc].split_at(nc);
        let (e0, e1, o0, o1) = (&ev[..l], &ev[tw..tw + l], &od[..l], &od[tw..tw + l]);
        let d = &mut dst[j][..l];
        for q in 0..l {
            d[q] = e0[q] - e1[q];
        }
        let d = &mut dst[4 + j][..l];
        for q in 0..l {
            d[q] = o0[q] + e1[q];
        }
        let d = &mut dst[8 + j][..l];
        for q in 0..l {
            d[q] = e1[q] - o0[q];
        }
        let d = &mut dst[12 + j][..l];
        for q in 0..l {
            d[q] = o0[q] - o1[q];
        }
    }
}

/// [`output_transform`], compiled with AVX2 where the CPU has it (as [`input_transform_best`]).
fn output_transform_best<T: WithDType>(buf: &mut Vec<T>, m: &[&[T]; 16], lt: (usize, usize), ow: usize, dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<T: WithDType>(buf: &mut Vec<T>, m: &[&[T]; 16], lt: (usize, usize), ow: usize, dst: &mut [T]) {
            output_transform(buf, m, lt, ow, dst)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { avx2(buf, m, lt, ow, dst) };
    }
    output_transform(buf, m, lt, ow, dst)
}

/// `Aᵀ m A` of `len` rows of `tw` tiles of one output channel (`m[ξ]`, `len · tw` each)
/// into the output rows `dst` (`ow` wide, 2 per row of tiles, the last one cut where the
/// map's height is odd).
#[inline(always)]
fn output_transform<T: WithDType>(
    buf: &mut Vec<T>,
    m: &[&[T]; 16],
    (len, tw): (usize, usize),
    ow: usize,
    dst: &mut [T],
) {
    let l = len * tw;
    // Of known length, so the loop below needs no bounds checks (and vectorises).
    let m: [&[T]; 16] = std::array::from_fn(|k| &m[k][..l]);
    buf.resize(8 * l, T::zero());
    // Per tile: rows 0 and 1 of the result, even and odd columns.
    let (r0, r1) = buf[..4 * l].split_at_mut(2 * l);
    let (e0, o0) = r0.split_at_mut(l);
    let (e1, o1) = r1.split_at_mut(l);
    for q in 0..l {
        // Aᵀ m: 2 × 4 per tile, then · A: 2 × 2.
        let a = |k: usize| {
            (
                m[k][q] + m[4 + k][q] + m[8 + k][q],
                m[4 + k][q] - m[8 + k][q] - m[12 + k][q],
            )
        };
        let ((a0, b0), (a1, b1), (a2, b2), (a3, b3)) = (a(0), a(1), a(2), a(3));
        e0[q] = a0 + a1 + a2;
        o0[q] = a1 - a2 - a3;
        e1[q] = b0 + b1 + b2;
        o1[q] = b1 - b2 - b3;
    }
    // Interleaved into rows of 2·tw, then copied out `ow` wide.
    let (parts, out) = buf.split_at_mut(4 * l);
    let (top, bottom) = out.split_at_mut(2 * l);
    for (r, y) in [top, bottom].into_iter().enumerate() {
        let (e, od) = parts[2 * r * l..(2 * r + 2) * l].split_at(l);
        for ((pair, &e), &od) in y.chunks_exact_mut(2).zip(e).zip(od) {
            pair[0] = e;
            pair[1] = od;
        }
        for lr in 0..len {
            if let Some(row) = dst.get_mut((2 * lr + r) * ow..(2 * lr + r + 1) * ow) {
                row.copy_from_slice(&y[lr * 2 * tw..][..ow]);
            }
        }
    }
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
