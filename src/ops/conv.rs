//! 2-D convolution (one group) as im2col + one matrix product per image, with a backward
//! pass that computes the input gradient as a matrix product + col2im, and the weight
//! gradient only when the weight takes part in the gradient graph. candle's conv backward
//! always computes the weight gradient and takes its input gradient from a slow transposed
//! convolution; its forward needs explicit padding and fails on unused trailing rows.
//! Padding may differ on each side (TensorFlow's SAME padding at stride 2).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};

use std::sync::Arc;

use super::bias::{act_grad, bias_grad, epilogue, Act};
use super::pointwise::{gemm_serial, matmul_into, ranges, splits, SendPtr};
use super::scratch::Scratch;
use super::winograd::{self, Element, Kernel};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
pub struct Conv2d {
    pub stride: usize,
    /// Zero padding: top, bottom, left, right.
    pub pad: [usize; 4],
}

#[derive(Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn ohw(&self) -> usize {
        self.oh * self.ow
    }
}

impl Conv2d {
    fn geom(&self, x: &Shape, k: &Shape) -> candle_core::Result<Geom> {
        let (n, c, h, w) = x.dims4()?;
        let (o, kc, kh, kw) = k.dims4()?;
        if kc != c {
            candle_core::bail!("conv2d: weight {k:?} does not fit input {x:?}")
        }
        let [pt, pb, pl, pr] = self.pad;
        if self.stride == 0 || h + pt + pb < kh || w + pl + pr < kw {
            candle_core::bail!("conv2d: input {x:?} too small for kernel {kh}×{kw}")
        }
        Ok(Geom {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            oh: (h + pt + pb - kh) / self.stride + 1,
            ow: (w + pl + pr - kw) / self.stride + 1,
        })
    }

    /// Calls `f(row, oy, xrow, lo, hi, shift)` for every row of the column matrix of
    /// channels `chans` that reads an input row inside the image at output row `oy`: `row`
    /// is `((c − chans.start)·kh + ky)·kw + kx`, `xrow` the input row's offset from channel
    /// `chans.start`'s plane, and the outputs `lo..hi` of that `kx` read input column
    /// `ox·s + shift`.
    #[inline(always)]
    fn for_taps(
        &self,
        g: &Geom,
        chans: std::ops::Range<usize>,
        rows: std::ops::Range<usize>,
        mut f: impl FnMut(usize, usize, usize, usize, usize, isize),
    ) {
        let (pt, s) = (self.pad[0] as isize, self.stride as isize);
        let cols: Vec<(usize, usize, isize)> = (0..g.kw)
            .map(|kx| super::column_range(g.w, g.ow, kx, self.pad[2], self.stride))
            .collect();
        let c0 = chans.start;
        for c in chans {
            for ky in 0..g.kh {
                for oy in rows.clone() {
                    let iy = oy as isize * s + ky as isize - pt;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    for (kx, &(lo, hi, shift)) in cols.iter().enumerate() {
                        if lo < hi {
                            f(
                                ((c - c0) * g.kh + ky) * g.kw + kx,
                                oy - rows.start,
                                (c - c0) * g.h * g.w + iy as usize * g.w,
                                lo,
                                hi,
                                shift,
                            );
                        }
                    }
                }
            }
        }
    }

    /// Channels `chans` and output rows `rows` of one image `(C, H, W)` → their rows of the
    /// column matrix, `(chans·kh·kw, rows·OW)` (zeros where padded). Every element is written
    /// once: zeroing the whole matrix first was a pass over memory as long as the copy itself.
    fn im2col<T: WithDType>(
        &self,
        x: &[T],
        g: &Geom,
        chans: std::ops::Range<usize>,
        rows: std::ops::Range<usize>,
        col: &mut [T],
    ) {
        let (s, ow) = (self.stride, g.ow);
        let ohw = rows.len() * ow;
        let (pt, si) = (self.pad[0] as isize, self.stride as isize);
        let cols: Vec<(usize, usize, isize)> = (0..g.kw)
            .map(|kx| super::column_range(g.w, g.ow, kx, self.pad[2], self.stride))
            .collect();
        let c0 = chans.start;
        // AVX2 where the CPU has it (the strided copies vectorise wider); same values.
        super::simd_with(|| {
            for c in chans {
                for ky in 0..g.kh {
                    for oy in rows.clone() {
                        let iy = oy as isize * si + ky as isize - pt;
                        let inside = iy >= 0 && iy < g.h as isize;
                        let xrow = c * g.h * g.w + iy.max(0) as usize * g.w;
                        for (kx, &(lo, hi, shift)) in cols.iter().enumerate() {
                            let row = ((c - c0) * g.kh + ky) * g.kw + kx;
                            let at = row * ohw + (oy - rows.start) * ow;
                            let dst = &mut col[at..at + ow];
                            if !inside || lo >= hi {
                                dst.fill(T::zero());
                                continue;
                            }
                            dst[..lo].fill(T::zero());
                            dst[hi..].fill(T::zero());
                            let first = (xrow as isize + lo as isize * si + shift) as usize;
                            strided_copy(&mut dst[lo..hi], &x[first..], s);
                        }
                    }
                }
            }
        });
    }

    /// Adds the column matrix of channels `chans` and output rows `rows` back onto those
    /// channels' gradient `gx` (`chans.len()` planes of `H × W`).
    fn col2im<T: WithDType>(
        &self,
        col: &[T],
        g: &Geom,
        chans: std::ops::Range<usize>,
        rows: std::ops::Range<usize>,
        gx: &mut [T],
    ) {
        let (s, ow) = (self.stride, g.ow);
        let ohw = rows.len() * ow;
        // AVX2 where the CPU has it: the additions are the same, in the same order.
        super::simd_with(|| {
            self.for_taps(g, chans, rows, |row, oy, xrow, lo, hi, shift| {
                let src = &col[row * ohw + oy * ow + lo..row * ohw + oy * ow + hi];
                let first = (xrow as isize + (lo * s) as isize + shift) as usize;
                // The touched span, bounded first so that the loop runs without checks.
                let dst = &mut gx[first..first + (src.len() - 1) * s + 1];
                if s == 1 {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                } else {
                    for (j, &v) in src.iter().enumerate() {
                        dst[j * s] += v;
                    }
                }
            })
        });
    }

    /// Output rows per tile: the column matrix of a tile stays near 2 MiB, so it is reused
    /// from cache instead of being a fresh allocation the size of the image times k².
    fn tile_rows(&self, g: &Geom) -> usize {
        ((1 << 19) / (g.ckk() * g.ow).max(1)).clamp(1, g.oh)
    }

    fn tiles(&self, g: &Geom) -> impl Iterator<Item = std::ops::Range<usize>> {
        let t = self.tile_rows(g);
        let oh = g.oh;
        (0..oh).step_by(t).map(move |r| r..(r + t).min(oh))
    }

    /// How many parts a task is split into, and the blocks of output channels: several only
    /// when the (image, tile) items are fewer than the threads.
    fn out_blocks(&self, g: &Geom) -> (usize, Vec<std::ops::Range<usize>>) {
        let per = splits(g.n * self.tiles(g).count(), g.n * g.o * g.ohw() * g.ckk());
        (per, ranges(g.o, per.min(g.o / 16).max(1)).collect())
    }

    /// The convolution of every image, then `post`'s bias and activation. Tasks of (image,
    /// tile of output rows, block of output channels) run in parallel, each on one thread,
    /// the bias and activation applied to its block while it is in cache.
    fn forward<T: WithDType>(&self, x: &[T], k: &[T], g: &Geom, post: Option<(&[T], Act)>) -> Vec<T> {
        let (ohw, chw, ckk, kk) = (g.ohw(), g.c * g.h * g.w, g.ckk(), g.kh * g.kw);
        let len = g.n * g.o * ohw;
        let mut y: Vec<T> = Vec::with_capacity(len);
        let tiles: Vec<_> = self.tiles(g).collect();
        let (per, oblocks) = self.out_blocks(g);
        let dst = SendPtr(y.as_mut_ptr());
        let col_len = ckk * self.tile_rows(g) * g.ow;
        // y[os, tile of image i] = W[os] · col, then the bias and activation.
        let product = |col: &[T], i: usize, rows: &std::ops::Range<usize>, os: &std::ops::Range<usize>| {
            let n = rows.len() * g.ow;
            let at = i * g.o * ohw + rows.start * g.ow;
            // SAFETY: the block (channels `os`, columns `at..at + n` of each) lies in `y`
            // and no other task's overlaps it.
            unsafe {
                // The destination's rows are OH·OW apart.
                gemm_serial(
                    (os.len(), n, ckk),
                    dst.get().add(at + os.start * ohw),
                    ohw,
                    &k[os.start * ckk..],
                    (ckk, 1),
                    col,
                    (n, 1),
                    false,
                );
                if let Some((b, act)) = post {
                    for o in os.clone() {
                        let row = std::slice::from_raw_parts_mut(dst.get().add(at + o * ohw), n);
                        epilogue(row, &b[o..o + 1], 1, n, act);
                    }
                }
            }
        };
        if oblocks.len() == 1 {
            let jobs: Vec<_> = (0..g.n)
                .flat_map(|i| tiles.iter().map(move |r| (i, r.clone())))
                .collect();
            jobs.into_par_iter().for_each(|(i, rows)| {
                let mut col = Scratch::<T>::new(col_len);
                self.im2col(&x[i * chw..(i + 1) * chw], g, 0..g.c, rows.clone(), &mut col);
                product(&col, i, &rows, &oblocks[0]);
            });
        } else {
            // Fewer (image, tile) items than threads, so output channels are split: each
            // item's column matrix is built once, by blocks of input channels in parallel,
            // and shared by the blocks' products (it was rebuilt by each, 4× at 7² and 14²).
            let mut col = Scratch::<T>::new(col_len);
            for i in 0..g.n {
                for rows in &tiles {
                    let n = rows.len() * g.ow;
                    let cp = SendPtr(col.as_mut_ptr());
                    ranges(g.c, per).collect::<Vec<_>>().into_par_iter().for_each(|cs| {
                        // SAFETY: channels `cs` own rows `cs·kk` of the column matrix.
                        let block = unsafe {
                            std::slice::from_raw_parts_mut(cp.get().add(cs.start * kk * n), cs.len() * kk * n)
                        };
                        self.im2col(&x[i * chw..(i + 1) * chw], g, cs, rows.clone(), block);
                    });
                    let col = &col[..ckk * n];
                    oblocks.par_iter().for_each(|os| product(col, i, rows, os));
                }
            }
        }
        // SAFETY: the tasks' blocks cover every image, output row and channel, and gemm
        // wrote every element of each (`acc` false).
        unsafe { y.set_len(len) };
        y
    }

    /// The input gradient: tasks of (image, block of input channels) run in parallel, each
    /// computing its channels' rows of the column matrix and adding them back onto its own
    /// channels (col2im of different channels never meets).
    /// `wt`: the transposed weight `(C·kh·kw) × O` and its (row, column) strides: `(1,
    /// C·kh·kw)` for the weight as it is, `(O, 1)` for a transposed copy, which gemm packs
    /// as contiguous rows instead of gathering one element at a time.
    fn grad_input<T: WithDType>(&self, gy: &[T], (k, (wrs, wcs)): (&[T], (usize, usize)), g: &Geom) -> Vec<T> {
        let (hw, chw, kk, ckk, ohw) = (g.h * g.w, g.c * g.h * g.w, g.kh * g.kw, g.ckk(), g.ohw());
        let mut gx = vec![T::zero(); g.n * chw];
        let per = splits(g.n, g.n * g.o * ohw * ckk);
        let jobs: Vec<_> = (0..g.n).flat_map(|i| ranges(g.c, per).map(move |cs| (i, cs))).collect();
        let dst = SendPtr(gx.as_mut_ptr());
        let col_len = ckk * self.tile_rows(g) * g.ow;
        jobs.into_par_iter().for_each(|(i, cs)| {
            let mut col = Scratch::<T>::new(col_len);
            // SAFETY: channels `cs` of image `i` are this task's alone.
            let gxi = unsafe { std::slice::from_raw_parts_mut(dst.get().add(i * chw + cs.start * hw), cs.len() * hw) };
            let gyi = &gy[i * g.o * ohw..(i + 1) * g.o * ohw];
            for rows in self.tiles(g) {
                let n = rows.len() * g.ow;
                let at = rows.start * g.ow;
                // gcol = W[:, cs]ᵀ · gy[:, tile].
                // SAFETY: `col` holds the block's rows (`cs.len()·kk ≤ ckk`) of `n` columns.
                unsafe {
                    gemm_serial(
                        (cs.len() * kk, n, g.o),
                        col.as_mut_ptr(),
                        n,
                        &k[cs.start * kk * wrs..],
                        (wrs, wcs),
                        &gyi[at..],
                        (ohw, 1),
                        false,
                    )
                };
                self.col2im(&col, g, cs.clone(), rows, gxi);
            }
        });
        gx
    }

    fn grad_weight<T: WithDType>(&self, gy: &[T], x: &[T], g: &Geom) -> Vec<T> {
        let mut gk = vec![T::zero(); g.o * g.ckk()];
        let mut col = Scratch::<T>::new(g.ckk() * self.tile_rows(g) * g.ow);
        let mut first = true;
        for (gyi, xi) in gy.chunks(g.o * g.ohw()).zip(x.chunks(g.c * g.h * g.w)) {
            for rows in self.tiles(g) {
                let n = rows.len() * g.ow;
                let at = rows.start * g.ow;
                self.im2col(xi, g, 0..g.c, rows, &mut col);
                // gW += gy[:, tile] · colᵀ: colᵀ has row stride 1 and column stride n.
                matmul_into(
                    (g.o, g.ckk(), n),
                    &mut gk,
                    g.ckk(),
                    &gyi[at..],
                    (g.ohw(), 1),
                    &col,
                    (1, n),
                    !first,
                );
                first = false;
            }
        }
        gk
    }
}

/// The input gradient as an op of (gy, weight), to run on storage from `bwd`.
struct GradInput(Conv2d, Shape);
/// The weight gradient as an op of (gy, x).
struct GradWeight(Conv2d, Shape);

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "cnnscope-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geom(l1.shape(), l2.shape())?;
        let out = dispatch!("conv2d", (s1, l1), (s2, l2), |x, k| self.forward(x, k, &g, None));
        Ok((out, Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        k: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gy = gy.contiguous()?;
        let gx = gy.apply_op2_no_bwd(k, &GradInput(*self, x.shape().clone()))?;
        Ok((Some(gx), self.weight_grad(x, k, &gy)?))
    }
}

impl Conv2d {
    /// The weight's gradient from the (contiguous) output gradient, only when the weight
    /// takes part in the gradient graph.
    fn weight_grad(&self, x: &Tensor, k: &Tensor, gy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        if k.track_op() {
            Ok(Some(gy.apply_op2_no_bwd(x, &GradWeight(*self, k.shape().clone()))?))
        } else {
            Ok(None)
        }
    }
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "cnnscope-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0.geom(&self.1, l2.shape())?;
        let out = dispatch!("conv2d", (s1, l1), (s2, l2), |gy, k| self.0.grad_input(
            gy,
            (k, (1, g.ckk())),
            &g
        ));
        Ok((out, self.1.clone()))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "cnnscope-conv2d-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0.geom(l2.shape(), &self.1)?;
        let out = dispatch!("conv2d", (s1, l1), (s2, l2), |gy, x| self.0.grad_weight(gy, x, &g));
        Ok((out, self.1.clone()))
    }
}

/// The convolution with its bias and activation as one op: one graph node (one output
/// buffer forward, one gradient accumulation backward) instead of two, and the bias and
/// activation applied to each image's output while it is still in cache.
struct Conv2dBiasAct(Conv2d, Act, Option<Arc<Kernel>>);

/// The transformed forward kernel when Winograd's algorithm applies to a call: stride 1,
/// a kernel transformed for these channels and dtype, and enough tiles to pay.
fn winograd_forward<'a, T: Element>(k: Option<&'a Kernel>, conv: &Conv2d, g: &Geom) -> Option<&'a [T]> {
    let k = k?;
    let tiles = winograd::tiles(g.n, g.h, g.w, conv.pad);
    let applies = conv.stride == 1 && k.shape() == (g.o, g.c) && winograd::pays(tiles, g.c, g.o);
    applies.then(|| T::of(k).map(|(forward, _)| forward)).flatten()
}

/// The kernel and padding for the input gradient by Winograd's algorithm, when it applies:
/// the gradient convolved by the flipped, transposed kernel with padding `2 − p` each side.
fn winograd_backward<'a>(k: Option<&'a Arc<Kernel>>, conv: &Conv2d, g: &Geom) -> Option<(&'a Arc<Kernel>, [usize; 4])> {
    let [pt, pb, pl, pr] = conv.pad;
    let back = [
        2usize.saturating_sub(pt),
        2usize.saturating_sub(pb),
        2usize.saturating_sub(pl),
        2usize.saturating_sub(pr),
    ];
    let applies = |w: &&Arc<Kernel>| {
        conv.stride == 1
            && pt.max(pb).max(pl).max(pr) <= 2
            && w.shape() == (g.o, g.c)
            && winograd::pays(winograd::tiles(g.n, g.oh, g.ow, back), g.o, g.c)
    };
    k.filter(applies).map(|w| (w, back))
}

/// `act(conv(x, k) + b)` on slices, `x` `(N, C, H, W)` and `k` `(O, C, kh, kw)`, by the
/// kernels [`conv2d_bias_act`] uses (Winograd's where `winograd` is given and applies):
/// the output and its size `(OH, OW)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bias_act_forward<T: Element>(
    x: &[T],
    xdims: (usize, usize, usize, usize),
    k: &[T],
    (o, kh, kw): (usize, usize, usize),
    b: &[T],
    conv: Conv2d,
    act: Act,
    winograd: Option<&Kernel>,
) -> candle_core::Result<(Vec<T>, (usize, usize))> {
    let (n, c, h, w) = xdims;
    let g = conv.geom(&Shape::from(xdims), &Shape::from((o, c, kh, kw)))?;
    let y = match winograd_forward::<T>(winograd, &conv, &g) {
        Some(u) => winograd::conv(x, (n, c, h, w), u, g.o, conv.pad, (g.oh, g.ow), Some((b, act))),
        None => conv.forward(x, k, &g, Some((b, act))),
    };
    Ok((y, (g.oh, g.ow)))
}

/// Whether [`grad_input`] runs by Winograd's algorithm for these sizes (it then needs no
/// transposed weight).
pub(crate) fn winograd_grad_input(
    winograd: Option<&Arc<Kernel>>,
    xdims: (usize, usize, usize, usize),
    (o, kh, kw): (usize, usize, usize),
    conv: Conv2d,
) -> candle_core::Result<bool> {
    let g = conv.geom(&Shape::from(xdims), &Shape::from((o, xdims.1, kh, kw)))?;
    Ok(winograd_backward(winograd, &conv, &g).is_some())
}

/// The input gradient of [`bias_act_forward`]'s convolution on slices, from the gradient
/// `gy` `(N, O, OH, OW)` before the activation: Winograd's where it applies.
/// `kt`: the weight transposed, `(C·kh·kw) × O`, where the caller keeps one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad_input<T: Element>(
    gy: &[T],
    xdims: (usize, usize, usize, usize),
    k: &[T],
    kt: Option<&[T]>,
    (o, kh, kw): (usize, usize, usize),
    conv: Conv2d,
    winograd: Option<&Arc<Kernel>>,
) -> candle_core::Result<Vec<T>> {
    let (n, c, h, w) = xdims;
    let g = conv.geom(&Shape::from(xdims), &Shape::from((o, c, kh, kw)))?;
    Ok(match winograd_backward(winograd, &conv, &g) {
        Some((wk, back)) => {
            let (_, u) = T::of(wk).ok_or_else(|| candle_core::Error::Msg("winograd: kernel dtype".into()))?;
            winograd::conv(gy, (n, o, g.oh, g.ow), u, c, back, (h, w), None)
        }
        None => match kt {
            Some(kt) => conv.grad_input(gy, (kt, (o, 1)), &g),
            None => conv.grad_input(gy, (k, (1, g.ckk())), &g),
        },
    })
}

/// The input gradient of a stride-1 3×3 convolution by Winograd's algorithm: the
/// convolution of the output gradient by the flipped, transposed kernel, with padding
/// `2 − p` on each side. Operand: the output gradient.
struct WinogradGradInput(Arc<Kernel>, [usize; 4], Shape);

impl candle_core::CustomOp1 for WinogradGradInput {
    fn name(&self) -> &'static str {
        "cnnscope-conv2d-grad-input-winograd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = l.shape().dims4()?;
        let (_, c, h, w) = self.2.dims4()?;
        fn run<T: Element>(
            op: &WinogradGradInput,
            gy: &[T],
            dims: (usize, usize, usize, usize),
            c: usize,
            hw: (usize, usize),
        ) -> candle_core::Result<Vec<T>> {
            let (_, back) = T::of(&op.0).ok_or_else(|| candle_core::Error::Msg("winograd: kernel dtype".into()))?;
            Ok(winograd::conv(gy, dims, back, c, op.1, hw, None))
        }
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(run(self, super::contiguous_slice(v, l)?, dims, c, (h, w))?),
            CpuStorage::F64(v) => CpuStorage::F64(run(self, super::contiguous_slice(v, l)?, dims, c, (h, w))?),
            _ => candle_core::bail!("conv2d: f32 or f64 operands"),
        };
        Ok((out, self.2.clone()))
    }
}

impl CustomOp3 for Conv2dBiasAct {
    fn name(&self) -> &'static str {
        "cnnscope-conv2d-bias-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0.geom(l1.shape(), l2.shape())?;
        if l3.shape().elem_count() != g.o {
            candle_core::bail!("conv2d: bias {:?} does not fit {} outputs", l3.shape(), g.o)
        }
        let (xdims, kdims) = ((g.n, g.c, g.h, g.w), (g.o, g.kh, g.kw));
        let out = dispatch!("conv2d", (s1, l1), (s2, l2), (s3, l3), |x, k, b| {
            bias_act_forward(x, xdims, k, kdims, b, self.0, self.1, self.2.as_deref())?.0
        });
        Ok((out, Shape::from((g.n, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        k: &Tensor,
        b: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = act_grad(gy, res, self.1)?.contiguous()?;
        let geom = self.0.geom(x.shape(), k.shape())?;
        let winograd = winograd_backward(self.2.as_ref(), &self.0, &geom);
        let (gx, gk) = match winograd {
            Some((w, back)) => {
                let gx = g.apply_op1_no_bwd(&WinogradGradInput(w.clone(), back, x.shape().clone()))?;
                (Some(gx), self.0.weight_grad(x, k, &g)?)
            }
            None => self.0.bwd(x, k, res, &g)?,
        };
        let gb = bias_grad(&g, b)?;
        Ok((gx, gk, gb))
    }
}

/// `act(conv2d(x, k) + b)`: [`conv2d`] with a per-channel bias and an activation, one op.
/// `winograd`: `k` transformed ([`Kernel::new`]), for Winograd's algorithm where it applies
/// (a weight that takes part in the gradient graph may change, so it is not used then).
pub fn conv2d_bias_act(
    x: &Tensor,
    k: &Tensor,
    b: &Tensor,
    stride: usize,
    pad: [usize; 4],
    act: Act,
    winograd: Option<&Arc<Kernel>>,
) -> candle_core::Result<Tensor> {
    let winograd = winograd.filter(|_| !k.track_op()).cloned();
    x.contiguous()?.apply_op3(
        &k.contiguous()?,
        &b.contiguous()?,
        Conv2dBiasAct(Conv2d { stride, pad }, act, winograd),
    )
}

/// Convolution of `(N, C, H, W)` by `(O, C, kh, kw)` with padding `[top, bottom, left, right]`.
pub fn conv2d(x: &Tensor, k: &Tensor, stride: usize, pad: [usize; 4]) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&k.contiguous()?, Conv2d { stride, pad })
}

/// `dst[j] = src[j·s]`: the stride-2 case (every strided convolution here) written so that
/// bounds checks leave the loop and it vectorises; the iterator form copied one by one.
#[inline(always)]
fn strided_copy<T: Copy>(dst: &mut [T], src: &[T], s: usize) {
    let n = dst.len();
    if n == 0 {
        return;
    }
    let src = &src[..(n - 1) * s + 1];
    match s {
        1 => dst.copy_from_slice(src),
        2 => {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = src[2 * j];
            }
        }
        _ => {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = src[j * s];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_diff;
    use candle_core::{Device, Var};

    /// Against candle's conv2d on explicitly padded input: forward, input and weight
    /// gradients, on odd sizes, stride 2 and 3, asymmetric padding and batches.
    #[test]
    fn matches_candle_conv2d() {
        let dev = Device::Cpu;
        let cases: &[(usize, usize, usize, usize, usize, usize, usize, [usize; 4])] = &[
            // n, c, o, h, w, k, stride, pad
            (1, 3, 4, 9, 7, 3, 1, [1, 1, 1, 1]),
            (2, 2, 3, 10, 11, 3, 2, [0, 1, 0, 1]),
            (1, 1, 2, 8, 8, 5, 2, [2, 2, 2, 2]),
            (3, 4, 5, 7, 9, 1, 1, [0, 0, 0, 0]),
            (1, 3, 2, 13, 13, 7, 2, [3, 3, 3, 3]),
            (2, 2, 2, 12, 9, 3, 3, [1, 0, 2, 1]),
            // Several tiles of output rows (the column matrix is tiled at 2^19 numbers).
            (2, 64, 3, 20, 100, 3, 1, [1, 1, 1, 1]),
            (1, 60, 2, 41, 97, 3, 2, [0, 1, 0, 1]),
            // Small maps split into blocks of output channels and of input channels.
            (1, 64, 64, 7, 9, 3, 1, [1, 1, 1, 1]),
            (3, 48, 40, 5, 6, 3, 2, [1, 1, 1, 1]),
            // One image, output channels split, one column matrix shared: stride 2 with
            // asymmetric padding, and a 1×1 stride-2 projection (ResNet's downsample).
            (1, 64, 64, 13, 11, 3, 2, [0, 1, 1, 0]),
            (1, 512, 64, 14, 14, 1, 2, [0, 0, 0, 0]),
        ];
        for &(n, c, o, h, w, k, stride, pad) in cases {
            let conv = Conv2d { stride, pad };
            let g = conv
                .geom(&Shape::from((n, c, h, w)), &Shape::from((o, c, k, k)))
                .unwrap();
            if (c, w) == (64, 100) {
                assert!(conv.tiles(&g).count() > 1, "the case covers several tiles");
            }
            if n == 1 && o == 64 && rayon::current_num_threads() > 1 {
                assert!(conv.out_blocks(&g).1.len() > 1, "the case shares one column matrix");
            }
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let kv = Var::from_tensor(&Tensor::randn(0f64, 1.0, (o, c, k, k), &dev).unwrap()).unwrap();
            let ours = conv2d(&x, &kv, stride, pad).unwrap();
            let padded = x
                .pad_with_zeros(2, pad[0], pad[1])
                .unwrap()
                .pad_with_zeros(3, pad[2], pad[3])
                .unwrap();
            // candle's backward needs the rows the stride leaves unused cropped.
            let (ph, pw) = (padded.dim(2).unwrap(), padded.dim(3).unwrap());
            let (uh, uw) = ((ph - k) / stride * stride + k, (pw - k) / stride * stride + k);
            let padded = padded.narrow(2, 0, uh).unwrap().narrow(3, 0, uw).unwrap();
            let theirs = padded.conv2d(&kv, 0, stride, 1, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(
                max_diff(&ours, &theirs) < 1e-12,
                "forward {n} {c} {o} {h} {w} {k} {stride} {pad:?}"
            );
            let probe = Tensor::randn(0f64, 1.0, ours.dims(), &dev).unwrap();
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [x.as_tensor(), kv.as_tensor()] {
                let d = max_diff(g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(d < 1e-10, "gradient {n} {c} {o} {h} {w} {k} {stride} {pad:?}: {d}");
            }
        }
    }

    /// Bias and activation fused into the convolution against the separate ops.
    #[test]
    fn fused_bias_and_activation_match_separate_ops() {
        let dev = Device::Cpu;
        for &(n, c, o, h, w, k, stride, pad) in &[
            (2, 3, 4, 9, 7, 3, 1, [1, 1, 1, 1]),
            (1, 5, 6, 10, 11, 1, 2, [0; 4]),
            (2, 2, 3, 12, 9, 3, 2, [1, 0, 2, 1]),
        ] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let kv = Var::from_tensor(&Tensor::randn(0f64, 1.0, (o, c, k, k), &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&Tensor::randn(0f64, 1.0, o, &dev).unwrap()).unwrap();
            for act in [Act::Identity, Act::Relu, Act::GuidedRelu, Act::Relu6, Act::GuidedRelu6] {
                let ours = conv2d_bias_act(&x, &kv, &b, stride, pad, act, None).unwrap();
                let theirs = crate::ops::bias::bias_act(&conv2d(&x, &kv, stride, pad).unwrap(), &b, act).unwrap();
                assert!(max_diff(&ours, &theirs) < 1e-12, "{act:?}");
                let probe = Tensor::randn(0f64, 1.0, ours.dims(), &dev).unwrap();
                let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                for v in [x.as_tensor(), kv.as_tensor(), b.as_tensor()] {
                    assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-10, "{act:?}");
                }
            }
        }
    }

    /// The op with a Winograd kernel against the same op without: forward, input and
    /// weight gradients (the input gradient runs by Winograd too, padding 2 − p).
    #[test]
    fn winograd_path_matches_the_direct_one() {
        let dev = Device::Cpu;
        for &(n, c, o, h, w, pad) in &[(1, 256, 256, 16, 16, [1, 1, 1, 1]), (2, 260, 257, 15, 13, [0, 1, 1, 0])] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
            let k = Tensor::randn(0f64, 1.0, (o, c, 3, 3), &dev).unwrap();
            let b = Tensor::randn(0f64, 1.0, o, &dev).unwrap();
            let kernel = Arc::new(Kernel::new(&k).unwrap().unwrap());
            let g = Geom {
                n,
                c,
                h,
                w,
                o,
                kh: 3,
                kw: 3,
                oh: h + pad[0] + pad[1] - 2,
                ow: w + pad[2] + pad[3] - 2,
            };
            assert!(
                winograd::pays(winograd::tiles(g.n, g.h, g.w, pad), c, o),
                "the case takes the Winograd path"
            );
            for act in [Act::Identity, Act::Relu] {
                let ours = conv2d_bias_act(&x, &k, &b, 1, pad, act, Some(&kernel)).unwrap();
                let theirs = conv2d_bias_act(&x, &k, &b, 1, pad, act, None).unwrap();
                assert!(max_diff(&ours, &theirs) < 1e-10, "{act:?}");
                let probe = Tensor::randn(0f64, 1.0, ours.dims(), &dev).unwrap();
                let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                assert!(max_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-10, "{act:?}");
            }
        }
    }

    #[test]
    fn no_weight_gradient_for_a_constant_weight() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 2, 6, 6), &dev).unwrap()).unwrap();
        let k = Tensor::randn(0f32, 1.0, (3, 2, 3, 3), &dev).unwrap();
        let g = conv2d(&x, &k, 1, [1; 4])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&k).is_none());
        assert!(g.get(x.as_tensor()).is_some());
    }
}
