//! Depthwise 2-D convolution (one `k×k` filter per channel) with its backward pass.
//!
//! candle runs a grouped convolution as one convolution per group plus a concatenation,
//! which is slow, and its backward builds full-size tensors per group. A depthwise
//! convolution is a few multiply-adds per output value, so a direct loop over each
//! channel plane (in parallel across planes) is far faster. Padding may differ on each
//! side (TensorFlow's "SAME" padding is asymmetric at stride 2). The weight gradient is
//! only computed when the weight takes part in the gradient graph.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::bias::{act_grad, bias_grad, relu6_mask, relu6_passes, Act};

#[derive(Debug, Clone, Copy)]
pub struct Depthwise {
    pub stride: usize,
    /// Zero padding: top, bottom, left, right.
    pub pad: [usize; 4],
}

#[derive(Clone, Copy)]
pub(crate) struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl Depthwise {
    pub(crate) fn geom(&self, x: &Shape, k: &Shape) -> candle_core::Result<Geom> {
        let (n, c, h, w) = x.dims4()?;
        let (kc, one, kh, kw) = k.dims4()?;
        if kc != c || one != 1 {
            candle_core::bail!("depthwise conv: weight {k:?} does not fit input {x:?}")
        }
        let [pt, pb, pl, pr] = self.pad;
        if self.stride == 0 || h + pt + pb < kh || w + pl + pr < kw {
            candle_core::bail!("depthwise conv: input {x:?} too small for kernel {kh}×{kw}")
        }
        Ok(Geom {
            n,
            c,
            h,
            w,
            kh,
            kw,
            oh: (h + pt + pb - kh) / self.stride + 1,
            ow: (w + pl + pr - kw) / self.stride + 1,
        })
    }

    /// For each kernel column `kx`: the outputs `lo..hi` whose input column
    /// `ox·s + kx − left` is inside the row, and where that column lies in the row split by
    /// phase (see [`split`]): phase `p`, offset `base` (input column = `(ox + base)·s + p`).
    fn columns(&self, g: &Geom) -> Vec<Cols> {
        let s = self.stride as isize;
        (0..g.kw)
            .map(|kx| {
                let (lo, hi, shift) = super::column_range(g.w, g.ow, kx, self.pad[2], self.stride);
                Cols {
                    lo,
                    hi,
                    phase: shift.rem_euclid(s) as usize,
                    base: shift.div_euclid(s),
                }
            })
            .collect()
    }

    /// Calls `f(oy, iy, ky, kx, cols)` for every kernel tap whose input row `iy` of output
    /// row `oy` is inside the plane. With the input split by column phase, every tap is a
    /// contiguous run of columns, so the innermost loops vectorise at any stride.
    #[inline(always)]
    fn for_rows(&self, g: &Geom, cols: &[Cols], mut f: impl FnMut(usize, usize, usize, usize, &Cols)) {
        let (pt, s) = (self.pad[0] as isize, self.stride as isize);
        for oy in 0..g.oh {
            for ky in 0..g.kh {
                let iy = oy as isize * s + ky as isize - pt;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                for (kx, c) in cols.iter().enumerate() {
                    if c.lo < c.hi {
                        f(oy, iy as usize, ky, kx, c);
                    }
                }
            }
        }
    }

    /// The convolution of every plane, then `post` on each output plane while it is in
    /// cache. With `mask`, the input is first masked by ReLU6's gradient (zero where
    /// `mask` is 0 or 6), as it is copied.
    pub(crate) fn forward<T: WithDType>(
        &self,
        x: &[T],
        k: &[T],
        g: &Geom,
        mask: Option<&[T]>,
        post: Post<'_, T>,
    ) -> Vec<T> {
        let mut out = vec![T::zero(); g.n * g.c * g.oh * g.ow];
        let (ihw, ohw) = (g.h * g.w, g.oh * g.ow);
        out.par_chunks_mut(ohw)
            .enumerate()
            .for_each_init(Vec::new, |buf, (plane, o)| {
                let ch = plane % g.c;
                let xp = &x[plane * ihw..(plane + 1) * ihw];
                let mp = mask.map(|m| &m[plane * ihw..(plane + 1) * ihw]);
                self.direct(g, xp, mp, &k[ch * g.kh * g.kw..(ch + 1) * g.kh * g.kw], o, buf);
                match post {
                    Post::None => {}
                    Post::Bias(b, act) => super::bias::epilogue(o, &b[ch..ch + 1], 1, ohw, act),
                    Post::Mask(y) => relu6_mask(o, &y[plane * ohw..(plane + 1) * ohw]),
                }
            });
        out
    }

    /// One plane: `o[oy][ox] = Σ k[ky][kx]·x[oy·s + ky − pt][ox·s + kx − pl]` (zero outside
    /// the plane), summed in (ky, kx) order. The plane is first copied into `buf` with its
    /// zero border and its columns split by phase, so each tap of a block of outputs is one
    /// contiguous run, and a block of outputs stays in registers across all the taps (one
    /// store per output instead of one per tap).
    fn direct<T: WithDType>(&self, g: &Geom, x: &[T], mask: Option<&[T]>, kp: &[T], o: &mut [T], buf: &mut Vec<T>) {
        match g.ow {
            0..=8 => self.direct_lanes::<T, 8>(g, x, mask, kp, o, buf),
            9..=16 => self.direct_lanes::<T, 16>(g, x, mask, kp, o, buf),
            _ => self.direct_lanes::<T, 32>(g, x, mask, kp, o, buf),
        }
    }

    #[inline(always)]
    fn direct_lanes<T: WithDType, const L: usize>(
        &self,
        g: &Geom,
        x: &[T],
        mask: Option<&[T]>,
        kp: &[T],
        o: &mut [T],
        buf: &mut Vec<T>,
    ) {
        let s = self.stride;
        let [pt, pb, pl, pr] = self.pad;
        let ph = g.h + pt + pb;
        // Rows are wide enough for whole blocks: the last block's extra lanes read zeros.
        let wp = (g.w + pl + pr).div_ceil(s).max(g.ow.div_ceil(L) * L + (g.kw - 1) / s);
        // The border stays zero: every plane of a call has the same geometry and only
        // writes the interior.
        if buf.len() != s * ph * wp {
            buf.clear();
            buf.resize(s * ph * wp, T::zero());
        }
        // With a mask, the masked value (zero where ReLU6 was flat) is what is copied.
        let pass = |v: T, m: T| if relu6_passes(m) { v } else { T::zero() };
        for (y, row) in x.chunks_exact(g.w).enumerate() {
            let r = y + pt;
            let mrow = mask.map(|m| &m[y * g.w..(y + 1) * g.w]);
            if s == 1 {
                let dst = &mut buf[r * wp + pl..r * wp + pl + g.w];
                match mrow {
                    None => dst.copy_from_slice(row),
                    Some(mrow) => {
                        for ((d, &v), &m) in dst.iter_mut().zip(row).zip(mrow) {
                            *d = pass(v, m);
                        }
                    }
                }
            } else {
                // Padded column `c = col + pl` goes to phase `c mod s`, place `c / s`.
                for p in 0..s {
                    let c0 = pl + (p + s - pl % s) % s; // the first padded column of phase p
                    if c0 - pl >= g.w {
                        continue;
                    }
                    let dst = &mut buf[(p * ph + r) * wp + c0 / s..(p * ph + r + 1) * wp];
                    let src = row[c0 - pl..].iter().step_by(s);
                    match mrow {
                        None => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v),
                        Some(mrow) => {
                            let ms = mrow[c0 - pl..].iter().step_by(s);
                            dst.iter_mut()
                                .zip(src)
                                .zip(ms)
                                .for_each(|((d, &v), &m)| *d = pass(v, m));
                        }
                    }
                }
            }
        }
        blocks::<T, L>(g, s, ph, wp, buf, kp, o);
    }

    pub(crate) fn grad_input<T: WithDType>(&self, gy: &[T], k: &[T], g: &Geom) -> Vec<T> {
        self.grad_input_masked(gy, k, g, None, None)
    }

    /// The input gradient from `gy` masked by ReLU6's gradient at the output (`gy_mask`:
    /// the ReLU6 output after this convolution), itself masked by `out_mask` (the ReLU6
    /// output before it): the two masks of an MBConv block, applied plane by plane.
    pub(crate) fn grad_input_masked<T: WithDType>(
        &self,
        gy: &[T],
        k: &[T],
        g: &Geom,
        gy_mask: Option<&[T]>,
        out_mask: Option<&[T]>,
    ) -> Vec<T> {
        let [pt, pb, pl, pr] = self.pad;
        if self.stride == 1 && pt.max(pb) < g.kh && pl.max(pr) < g.kw {
            // At stride 1 the input gradient is the same convolution of the output gradient
            // with the kernel turned by 180° and the padding `k − 1 − p`.
            let flip = Depthwise {
                stride: 1,
                pad: [g.kh - 1 - pt, g.kh - 1 - pb, g.kw - 1 - pl, g.kw - 1 - pr],
            };
            let fg = Geom {
                h: g.oh,
                w: g.ow,
                oh: g.h,
                ow: g.w,
                ..*g
            };
            let flipped: Vec<T> = k
                .chunks_exact(g.kh * g.kw)
                .flat_map(|kp| kp.iter().rev().copied())
                .collect();
            let post = out_mask.map_or(Post::None, Post::Mask);
            return flip.forward(gy, &flipped, &fg, gy_mask, post);
        }
        match gy_mask {
            Some(m) => {
                let mut masked = gy.to_vec();
                relu6_mask(&mut masked, m);
                self.grad_input_plain(&masked, k, g, out_mask)
            }
            None => self.grad_input_plain(gy, k, g, out_mask),
        }
    }

    /// The input gradient by scattering each output's gradient over its taps (any stride).
    fn grad_input_plain<T: WithDType>(&self, gy: &[T], k: &[T], g: &Geom, out_mask: Option<&[T]>) -> Vec<T> {
        let mut gx = vec![T::zero(); g.n * g.c * g.h * g.w];
        let (s, wp) = (self.stride, g.w.div_ceil(self.stride));
        let cols = self.columns(g);
        gx.par_chunks_mut(g.h * g.w).enumerate().for_each(|(plane, gxp)| {
            let ch = plane % g.c;
            let gp = &gy[plane * g.oh * g.ow..(plane + 1) * g.oh * g.ow];
            let kp = &k[ch * g.kh * g.kw..(ch + 1) * g.kh * g.kw];
            // Accumulate in the phase-split layout, then interleave back.
            let mut acc = if s == 1 {
                Vec::new()
            } else {
                vec![T::zero(); s * g.h * wp]
            };
            let buf: &mut [T] = if s == 1 { &mut *gxp } else { &mut acc };
            super::simd(buf, |buf| {
                self.for_rows(g, &cols, |oy, iy, ky, kx, c| {
                    let kv = kp[ky * g.kw + kx];
                    let grow = &gp[oy * g.ow + c.lo..oy * g.ow + c.hi];
                    let start = ((c.phase * g.h + iy) * wp) as isize + c.lo as isize + c.base;
                    let xs = &mut buf[start as usize..start as usize + grow.len()];
                    axpy(xs, grow, kv);
                })
            });
            if s > 1 {
                merge(&acc, gxp, g.h, g.w, s);
            }
            if let Some(m) = out_mask {
                relu6_mask(gxp, &m[plane * g.h * g.w..(plane + 1) * g.h * g.w]);
            }
        });
        gx
    }

    fn grad_weight<T: WithDType>(&self, gy: &[T], x: &[T], g: &Geom) -> Vec<T> {
        let mut gk = vec![T::zero(); g.c * g.kh * g.kw];
        let (s, wp) = (self.stride, g.w.div_ceil(self.stride));
        let cols = self.columns(g);
        gk.par_chunks_mut(g.kh * g.kw).enumerate().for_each(|(ch, gkp)| {
            for n in 0..g.n {
                let plane = n * g.c + ch;
                let gp = &gy[plane * g.oh * g.ow..(plane + 1) * g.oh * g.ow];
                let xp = split(&x[plane * g.h * g.w..(plane + 1) * g.h * g.w], g.h, g.w, s);
                self.for_rows(g, &cols, |oy, iy, ky, kx, c| {
                    let grow = &gp[oy * g.ow + c.lo..oy * g.ow + c.hi];
                    let start = ((c.phase * g.h + iy) * wp) as isize + c.lo as isize + c.base;
                    let xs = &xp[start as usize..start as usize + grow.len()];
                    let mut acc = T::zero();
                    for (&gv, &xv) in grow.iter().zip(xs) {
                        acc += gv * xv;
                    }
                    gkp[ky * g.kw + kx] += acc;
                });
            }
        });
        gk
    }
}

/// The output rows of [`Depthwise::direct`], from the phase-split plane `buf` (`s` phases
/// of `ph` rows `wp` long), compiled with AVX2 where the CPU has it (no fused multiply-add,
/// so both versions give the same bits).
fn blocks<T: WithDType, const L: usize>(g: &Geom, s: usize, ph: usize, wp: usize, buf: &[T], kp: &[T], o: &mut [T]) {
    // Where tap column `kx` starts in `buf`, relative to its row and block.
    let taps: Vec<usize> = (0..g.kw).map(|kx| (kx % s) * ph * wp + kx / s).collect();
    #[inline(always)]
    fn run<T: WithDType, const L: usize>(
        g: &Geom,
        s: usize,
        wp: usize,
        taps: &[usize],
        buf: &[T],
        kp: &[T],
        o: &mut [T],
    ) {
        for oy in 0..g.oh {
            for ox in (0..g.ow).step_by(L) {
                let mut acc = [T::zero(); L];
                for (ky, krow) in kp.chunks_exact(g.kw).enumerate() {
                    let row = (oy * s + ky) * wp + ox;
                    for (&kv, &t) in krow.iter().zip(taps) {
                        let src = &buf[row + t..row + t + L];
                        for (a, &v) in acc.iter_mut().zip(src) {
                            *a += v * kv;
                        }
                    }
                }
                // A whole block is stored even past the row's end (a fixed-size store, no
                // call): the extra lanes land at the start of the next row, which is
                // computed later and overwrites them. Only the plane's end is cut.
                let at = oy * g.ow + ox;
                if at + L <= o.len() {
                    o[at..at + L].copy_from_slice(&acc);
                } else {
                    for (d, &v) in o[at..].iter_mut().zip(&acc) {
                        *d = v;
                    }
                }
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<T: WithDType, const L: usize>(
            g: &Geom,
            s: usize,
            wp: usize,
            taps: &[usize],
            buf: &[T],
            kp: &[T],
            o: &mut [T],
        ) {
            run::<T, L>(g, s, wp, taps, buf, kp, o)
        }
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { avx2::<T, L>(g, s, wp, &taps, buf, kp, o) };
        return;
    }
    run::<T, L>(g, s, wp, &taps, buf, kp, o)
}

/// What [`Depthwise::forward`] applies to each output plane while it is in cache.
#[derive(Clone, Copy)]
pub(crate) enum Post<'a, T> {
    None,
    /// A per-channel bias and an activation.
    Bias(&'a [T], Act),
    /// ReLU6's gradient: zero where this ReLU6 output is 0 or 6.
    Mask(&'a [T]),
}

/// `dst += a·src`, the inner loop of the forward and input-gradient kernels; called inside
/// [`super::simd`], so it is compiled with AVX2 where the CPU has it. No fused multiply-add,
/// so both versions give the same bits.
#[inline(always)]
fn axpy<T: WithDType>(dst: &mut [T], src: &[T], a: T) {
    for (d, &v) in dst.iter_mut().zip(src) {
        *d += v * a;
    }
}

/// Where kernel column `kx`'s inputs lie; see [`Depthwise::columns`].
struct Cols {
    lo: usize,
    hi: usize,
    phase: usize,
    base: isize,
}

/// A plane `h×w` with each row split by column phase: `out[(p·h + y)·wp + j] = x[y·w + p + s·j]`
/// (`wp = ⌈w/s⌉`; missing columns are 0). At stride 1 this is the plane itself.
fn split<T: WithDType>(x: &[T], h: usize, w: usize, s: usize) -> std::borrow::Cow<'_, [T]> {
    if s == 1 {
        return std::borrow::Cow::Borrowed(x);
    }
    let wp = w.div_ceil(s);
    let mut out = vec![T::zero(); s * h * wp];
    for y in 0..h {
        let row = &x[y * w..(y + 1) * w];
        for p in 0..s.min(w) {
            let dst = &mut out[(p * h + y) * wp..(p * h + y + 1) * wp];
            for (d, &v) in dst.iter_mut().zip(row[p..].iter().step_by(s)) {
                *d = v;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The inverse of [`split`], writing into `x`.
fn merge<T: WithDType>(parts: &[T], x: &mut [T], h: usize, w: usize, s: usize) {
    let wp = w.div_ceil(s);
    for y in 0..h {
        let row = &mut x[y * w..(y + 1) * w];
        for p in 0..s.min(w) {
            let src = &parts[(p * h + y) * wp..(p * h + y + 1) * wp];
            for (d, &v) in row[p..].iter_mut().step_by(s).zip(src) {
                *d = v;
            }
        }
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "cnnscope-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geom(l1.shape(), l2.shape())?;
        let out = dispatch!("depthwise conv", (s1, l1), (s2, l2), |x, k| {
            self.forward(x, k, &g, None, Post::None)
        });
        Ok((out, Shape::from((g.n, g.c, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        k: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // Both gradients run as ops on the tensors' storage: no copies in and out.
        let gy = gy.contiguous()?;
        let gx = gy.apply_op2_no_bwd(&k.contiguous()?, &GradInput(*self, x.shape().clone()))?;
        let gk = if k.track_op() {
            Some(gy.apply_op2_no_bwd(&x.contiguous()?, &GradWeight(*self, k.shape().clone()))?)
        } else {
            None
        };
        Ok((Some(gx), gk))
    }
}

/// The input gradient as an op of (gy, kernel).
struct GradInput(Depthwise, Shape);
/// The kernel gradient as an op of (gy, x).
struct GradWeight(Depthwise, Shape);

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "cnnscope-depthwise-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0.geom(&self.1, l2.shape())?;
        let out = dispatch!("depthwise conv backward", (s1, l1), (s2, l2), |gy, k| {
            self.0.grad_input(gy, k, &g)
        });
        Ok((out, self.1.clone()))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "cnnscope-depthwise-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0.geom(l2.shape(), &self.1)?;
        let out = dispatch!("depthwise conv backward", (s1, l1), (s2, l2), |gy, x| {
            self.0.grad_weight(gy, x, &g)
        });
        Ok((out, self.1.clone()))
    }
}

/// The depthwise convolution with its bias and activation as one op: one output buffer and
/// one pass forward, one graph node backward.
struct DepthwiseBias(Depthwise, Act);

impl CustomOp3 for DepthwiseBias {
    fn name(&self) -> &'static str {
        "cnnscope-depthwise-conv2d-bias-act"
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
        if l3.shape().elem_count() != g.c {
            candle_core::bail!("depthwise conv: bias {:?} does not fit {} channels", l3.shape(), g.c)
        }
        let act = self.1;
        let out = dispatch!("depthwise conv", (s1, l1), (s2, l2), (s3, l3), |x, k, b| {
            self.0.forward(x, k, &g, None, Post::Bias(b, act))
        });
        Ok((out, Shape::from((g.n, g.c, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        k: &Tensor,
        b: &Tensor,
        res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = act_grad(gy, res, self.1)?;
        let (gx, gk) = self.0.bwd(x, k, res, &g)?;
        let gb = bias_grad(&g, b)?;
        Ok((gx, gk, gb))
    }
}

/// `act(depthwise(x, k) + b)`: [`depthwise_conv2d`] with a per-channel bias and an
/// activation in the same op.
pub fn depthwise_conv2d_bias_act(
    x: &Tensor,
    k: &Tensor,
    b: &Tensor,
    stride: usize,
    pad: [usize; 4],
    act: Act,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(
        &k.contiguous()?,
        &b.contiguous()?,
        DepthwiseBias(Depthwise { stride, pad }, act),
    )
}

/// Depthwise convolution of `(N, C, H, W)` by `(C, 1, kh, kw)`, padding `[top, bottom, left, right]`.
pub fn depthwise_conv2d(x: &Tensor, k: &Tensor, stride: usize, pad: [usize; 4]) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&k.contiguous()?, Depthwise { stride, pad })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::max_diff;
    use candle_core::{Device, Var};

    /// Forward, input gradient and weight gradient against candle's grouped convolution.
    fn check(n: usize, c: usize, h: usize, w: usize, k: usize, stride: usize, pad: [usize; 4]) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
        let kw = Var::from_tensor(&Tensor::randn(0f64, 1.0, (c, 1, k, k), &dev).unwrap()).unwrap();
        let ours = depthwise_conv2d(&x, &kw, stride, pad).unwrap();
        let padded = x
            .pad_with_zeros(2, pad[0], pad[1])
            .unwrap()
            .pad_with_zeros(3, pad[2], pad[3])
            .unwrap();
        // candle's conv backward fails when the stride leaves trailing rows or columns
        // unused; cropping them (they do not affect the output) avoids that.
        let (ph, pw) = (padded.dim(2).unwrap(), padded.dim(3).unwrap());
        let (uh, uw) = ((ph - k) / stride * stride + k, (pw - k) / stride * stride + k);
        let padded = padded.narrow(2, 0, uh).unwrap().narrow(3, 0, uw).unwrap();
        let theirs = padded.conv2d(&kw, 0, stride, 1, c).unwrap();
        assert_eq!(ours.dims(), theirs.dims());
        assert!(max_diff(&ours, &theirs) < 1e-10);
        let r = Tensor::randn(0f64, 1.0, ours.shape(), &dev).unwrap();
        let go = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(
            max_diff(go.get(&x).unwrap(), gt.get(&x).unwrap()) < 1e-9,
            "input gradient"
        );
        assert!(
            max_diff(go.get(&kw).unwrap(), gt.get(&kw).unwrap()) < 1e-9,
            "weight gradient"
        );
    }

    #[test]
    fn matches_candle_grouped_conv() {
        check(2, 3, 9, 7, 3, 1, [1, 1, 1, 1]);
        check(1, 4, 11, 11, 3, 2, [0, 1, 0, 1]); // TF SAME at stride 2: asymmetric
        check(2, 5, 10, 13, 5, 2, [1, 2, 1, 2]);
        check(1, 2, 6, 6, 5, 1, [2, 2, 2, 2]);
        check(3, 2, 5, 8, 3, 3, [0, 0, 0, 0]);
        // Rows longer than one block of outputs, with a partial last block.
        check(1, 2, 5, 41, 3, 1, [1, 1, 1, 1]);
        check(1, 3, 4, 70, 5, 2, [1, 2, 1, 2]);
        check(2, 2, 3, 19, 5, 1, [2, 2, 2, 2]);
        // Padding as large as the kernel allows, and none.
        check(1, 2, 7, 33, 3, 1, [2, 0, 0, 2]);
        check(1, 2, 7, 20, 3, 1, [0, 0, 0, 0]);
    }

    /// The fused op against the separate ones, every activation, all three gradients.
    #[test]
    fn fused_bias_and_activation_match_separate_ops() {
        let dev = Device::Cpu;
        for (stride, pad, w) in [(1, [1, 1, 1, 1], 23), (2, [0, 1, 0, 1], 18)] {
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 9, w), &dev).unwrap()).unwrap();
            let k = Var::from_tensor(&Tensor::randn(0f64, 2.0, (3, 1, 3, 3), &dev).unwrap()).unwrap();
            let b = Var::from_tensor(&(Tensor::randn(0f64, 1.0, 3, &dev).unwrap() + 2.0).unwrap()).unwrap();
            for act in [Act::Identity, Act::Relu6, Act::GuidedRelu6] {
                let ours = depthwise_conv2d_bias_act(&x, &k, &b, stride, pad, act).unwrap();
                let theirs =
                    crate::ops::bias::bias_act(&depthwise_conv2d(&x, &k, stride, pad).unwrap(), &b, act).unwrap();
                assert!(max_diff(&ours, &theirs) == 0.0, "{act:?}");
                let probe = Tensor::randn(0f64, 1.0, ours.shape(), &dev).unwrap();
                let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                for v in [x.as_tensor(), k.as_tensor(), b.as_tensor()] {
                    assert!(max_diff(g1.get(v).unwrap(), g2.get(v).unwrap()) < 1e-12, "{act:?}");
                }
            }
        }
    }

    #[test]
    fn no_weight_gradient_unless_wanted() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (1, 2, 5, 5), &dev).unwrap()).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 1, 3, 3), &dev).unwrap();
        let g = depthwise_conv2d(&x, &k, 1, [1; 4])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(g.get(&x).is_some());
        assert!(g.get(&k).is_none());
    }
}
