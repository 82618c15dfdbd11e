//! Forward passes of many copies of one input that differ only inside a small box each
//! (occlusion: the same photograph with a window hidden at a different place in each copy).
//!
//! A convolution's output at a pixel depends only on the inputs under its kernel, so in
//! the early layers a copy differs from the unchanged input only near its box. A
//! [`Region`] holds, at one point of the network, the unchanged input's activation once
//! (`base`) and each copy's values over a box of the map that contains every pixel where
//! the copy differs (`crop`); a convolution computes each copy's output only over the box
//! its input box reaches. The boxes grow layer by layer until they cover the map; from
//! there the copies run as ordinary full-size batches. The result equals the full forward
//! pass of every copy up to float rounding; in EfficientNet's first blocks, at 112² and
//! 56², a 32-pixel window reaches a fifth of the map or less.
//!
//! Boxes have one size for all copies at a point (boxes that would stick out of the map
//! are moved inside it), so the crops stack into one batch tensor.

use candle_core::{DType, Device, Tensor};

use super::nn::Conv;
use crate::ops::bias::Act;

/// Each copy's values over its box, and the unchanged values everywhere.
pub struct Region {
    /// The unchanged input's activation, `(1, C, H, W)`.
    base: Tensor,
    /// Each copy's values over its box, `(B, C, bh, bw)`.
    crop: Tensor,
    /// Top-left corner of each copy's box.
    origins: Vec<(usize, usize)>,
}

/// Regions hold f32 values (the dtype every built-in model computes in).
pub fn supported(x: &Tensor) -> bool {
    x.dtype() == DType::F32 && x.device().is_cpu()
}

/// The copies themselves, `(B, C, H, W)` in `x`'s dtype: what models without a region
/// path (or inputs that are not f32) run.
pub fn copies(x: &Tensor, patches: &Tensor, origins: &[(usize, usize)]) -> candle_core::Result<Tensor> {
    Region::new(x, patches, origins)?.into_full()?.to_dtype(x.dtype())
}

/// How many copies to hand a region-based `forward_patched` at once, from the batch size
/// used for full inputs: the unchanged input's pass is repeated per call, so more is
/// better, while by the point where the boxes cover the map the activations are several
/// times smaller than at the input's resolution, so 8× the batch stays within the same
/// memory.
pub fn patched_batch(batch: usize) -> usize {
    (batch * 8).max(1)
}

impl Region {
    /// Copies of `base` `(1, C, H, W)`, copy `i` with `patches[i]` `(C, ph, pw)` written at
    /// `origins[i]` (the patch must lie inside the map).
    pub fn new(base: &Tensor, patches: &Tensor, origins: &[(usize, usize)]) -> candle_core::Result<Region> {
        let (n, c, h, w) = base.dims4()?;
        let (b, pc, ph, pw) = patches.dims4()?;
        if n != 1 || pc != c || b != origins.len() {
            candle_core::bail!(
                "patched forward: base {:?}, patches {:?}, {} origins",
                base.dims(),
                patches.dims(),
                origins.len()
            );
        }
        if let Some(o) = origins.iter().find(|o| o.0 + ph > h || o.1 + pw > w) {
            candle_core::bail!("patched forward: a {ph}×{pw} patch at {o:?} leaves the {h}×{w} map");
        }
        Ok(Region {
            base: base.to_dtype(DType::F32)?.contiguous()?,
            crop: patches.to_dtype(DType::F32)?.contiguous()?,
            origins: origins.to_vec(),
        })
    }

    fn map_size(&self) -> candle_core::Result<(usize, usize)> {
        let (_, _, h, w) = self.base.dims4()?;
        Ok((h, w))
    }

    /// The size of each copy's box.
    pub fn box_size(&self) -> candle_core::Result<(usize, usize)> {
        let (_, _, h, w) = self.crop.dims4()?;
        Ok((h, w))
    }

    /// Whether every box is the whole map (nothing is left to save).
    pub fn is_full(&self) -> candle_core::Result<bool> {
        Ok(self.box_size()? == self.map_size()?)
    }

    /// An op that acts on each pixel on its own (a 1×1 convolution, a bias, an
    /// activation), applied to the unchanged map and to the boxes.
    pub fn map(&self, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> candle_core::Result<Region> {
        Ok(Region {
            base: f(&self.base)?.contiguous()?,
            crop: f(&self.crop)?.contiguous()?,
            origins: self.origins.clone(),
        })
    }

    /// `conv` followed by its bias and `act`: the unchanged map with the convolution's own
    /// padding, each copy over the output box its input box reaches.
    pub fn conv(&self, conv: &Conv, act: Act) -> candle_core::Result<Region> {
        let (h, w) = self.map_size()?;
        let [pt, _, pl, _] = conv.padding(h, w);
        let base = conv.forward_padded(&self.base, conv.padding(h, w), act)?;
        let (origins, input) = self.window_input(&base, conv.kernel(), conv.stride(), (pt, pl))?;
        let crop = conv.forward_padded(&input, [0; 4], act)?;
        Ok(Region { base, crop, origins })
    }

    /// A `k`×`k` max-pool with stride `s` and `pad` on every side, of a map that is never
    /// negative (it follows a ReLU, as in ResNet's stem). The boxes' windows are padded with
    /// zeros, not the pool's −∞: for such a map the two agree, since every window of the
    /// pool holds at least one value of the map and none is below zero.
    pub fn max_pool_nonnegative(&self, k: usize, s: usize, pad: usize) -> candle_core::Result<Region> {
        let base = crate::ops::max_pool2d(&self.base, k, s, pad)?.contiguous()?;
        let (origins, input) = self.window_input(&base, k, s, (pad, pad))?;
        let crop = crate::ops::max_pool2d(&input, k, s, 0)?.contiguous()?;
        Ok(Region { base, crop, origins })
    }

    /// For a windowed op (kernel `k`, stride `s`, padding `(top, left)`) whose output on the
    /// unchanged map is `base`: each copy's output box (one size for all, inside the map)
    /// and the input windows that compute it, zero outside the map, `(B, C, gh, gw)`.
    fn window_input(
        &self,
        base: &Tensor,
        k: usize,
        s: usize,
        (pt, pl): (usize, usize),
    ) -> candle_core::Result<(Vec<(usize, usize)>, Tensor)> {
        let (bh, bw) = self.box_size()?;
        let (_, _, oh, ow) = base.dims4()?;
        let rows: Vec<_> = self.origins.iter().map(|o| reach(o.0, bh, k, s, pt, oh)).collect();
        let cols: Vec<_> = self.origins.iter().map(|o| reach(o.1, bw, k, s, pl, ow)).collect();
        let (sh, sw) = (uniform(&rows, oh), uniform(&cols, ow));
        let origins: Vec<(usize, usize)> = rows
            .iter()
            .zip(&cols)
            .map(|(r, c)| (r.0.min(oh - sh), c.0.min(ow - sw)))
            .collect();
        // Output row `o` reads input rows `o·s − pt …` through `+ k − 1`.
        let starts: Vec<(isize, isize)> = origins
            .iter()
            .map(|&(y, x)| ((y * s) as isize - pt as isize, (x * s) as isize - pl as isize))
            .collect();
        let input = self.gather(&starts, ((sh - 1) * s + k, (sw - 1) * s + k))?;
        Ok((origins, input))
    }

    /// `self + other` (a skip connection), both at the same point of the same copies.
    pub fn add(&self, other: &Region) -> candle_core::Result<Region> {
        let (bh, bw) = self.box_size()?;
        let starts: Vec<(isize, isize)> = self.origins.iter().map(|&(y, x)| (y as isize, x as isize)).collect();
        let theirs = other.gather(&starts, (bh, bw))?;
        Ok(Region {
            base: (&self.base + &other.base)?,
            crop: (&self.crop + theirs)?,
            origins: self.origins.clone(),
        })
    }

    /// Runs `stages` in order while the boxes do not cover the map; returns every copy's
    /// whole map at that point and how many stages ran (the rest run on full maps).
    pub fn advance<S>(
        self,
        stages: &[S],
        step: impl Fn(&S, &Region) -> candle_core::Result<Region>,
    ) -> candle_core::Result<(Tensor, usize)> {
        let (mut r, mut next) = (self, 0);
        while next < stages.len() && !r.is_full()? {
            r = step(&stages[next], &r)?;
            next += 1;
        }
        Ok((r.into_full()?, next))
    }

    /// Every copy's whole map, `(B, C, H, W)`.
    pub fn into_full(self) -> candle_core::Result<Tensor> {
        let (h, w) = self.map_size()?;
        self.gather(&vec![(0, 0); self.origins.len()], (h, w))
    }

    /// Each copy's values over an `size` window at `starts[i]` (which may extend past
    /// the map: zeros there, as a convolution's zero padding): the copy's box where it
    /// has one, the unchanged map elsewhere.
    fn gather(&self, starts: &[(isize, isize)], size: (usize, usize)) -> candle_core::Result<Tensor> {
        let (_, c, h, w) = self.base.dims4()?;
        let dims = (c, (h, w), self.box_size()?);
        let (base, crop) = (self.base.contiguous()?, self.crop.contiguous()?);
        // Read in place, not copied out first.
        let out = crate::ops::with_values::<f32, _>(&base, |base| {
            crate::ops::with_values::<f32, _>(&crop, |crop| Ok(self.gather_from(base, crop, dims, starts, size)))
        })?;
        Tensor::from_vec(out, (starts.len(), c, size.0, size.1), &Device::Cpu)
    }

    /// [`Region::gather`] from the values of `base` `(1, C, H, W)` and `crop` `(B, C, bh,
    /// bw)`.
    fn gather_from(
        &self,
        base: &[f32],
        crop: &[f32],
        (c, (h, w), (bh, bw)): (usize, (usize, usize), (usize, usize)),
        starts: &[(isize, isize)],
        (gh, gw): (usize, usize),
    ) -> Vec<f32> {
        let mut out = vec![0f32; starts.len() * c * gh * gw];
        // The columns `lo..hi` of `len` starting at `start` that fall in `0..end`.
        let clip = |start: isize, len: usize, lo: isize, end: isize| -> (usize, usize) {
            let a = (lo - start).clamp(0, len as isize) as usize;
            let b = (end - start).clamp(0, len as isize) as usize;
            (a, b.max(a))
        };
        for (i, (&(gy, gx), &(oy, ox))) in starts.iter().zip(&self.origins).enumerate() {
            let (bx0, bx1) = clip(gx, gw, ox as isize, (ox + bw) as isize);
            let (mx0, mx1) = clip(gx, gw, 0, w as isize);
            for ch in 0..c {
                for r in 0..gh {
                    let y = gy + r as isize;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    let y = y as usize;
                    let dst = &mut out[((i * c + ch) * gh + r) * gw..][..gw];
                    let src = &base[(ch * h + y) * w..][..w];
                    let at = |col: usize| (gx + col as isize) as usize;
                    dst[mx0..mx1].copy_from_slice(&src[at(mx0)..at(mx1)]);
                    if y >= oy && y < oy + bh && bx0 < bx1 {
                        let src = &crop[((i * c + ch) * bh + y - oy) * bw..][..bw];
                        dst[bx0..bx1].copy_from_slice(&src[at(bx0) - ox..at(bx1) - ox]);
                    }
                }
            }
        }
        out
    }
}

/// The output range `lo..hi` (clamped to `0..out`) of a convolution (kernel `k`, stride
/// `s`, `pad` before) whose inputs meet the input range `at..at + len`.
fn reach(at: usize, len: usize, k: usize, s: usize, pad: usize, out: usize) -> (usize, usize) {
    let (at, len, k, s, pad) = (at as isize, len as isize, k as isize, s as isize, pad as isize);
    // Output `o` reads inputs `o·s − pad ..= o·s − pad + k − 1`.
    let lo = (at + pad - k + 1).max(0);
    let lo = (lo + s - 1) / s;
    let hi = (at + len - 1 + pad) / s + 1;
    (lo as usize, (hi as usize).min(out).max(lo as usize))
}

/// One box size for all copies: the largest range, at most the map.
fn uniform(ranges: &[(usize, usize)], out: usize) -> usize {
    ranges.iter().map(|r| r.1 - r.0).max().unwrap_or(out).clamp(1, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_matches_the_kernel_footprint() {
        // 3×3, stride 2, no padding before, 224 → 112: inputs 32..64 reach outputs 15..32.
        assert_eq!(reach(32, 32, 3, 2, 0, 112), (15, 32));
        // At the border the range is clamped to the map.
        assert_eq!(reach(0, 4, 3, 1, 1, 10), (0, 5));
        assert_eq!(reach(8, 2, 3, 1, 1, 10), (7, 10));
        // Brute force over small cases.
        for (k, s, pad, n) in [(3, 1, 1, 9), (3, 2, 0, 9), (5, 2, 1, 11), (5, 1, 2, 7), (1, 1, 0, 6)] {
            let out = (n + 2 * pad - k) / s + 1;
            for at in 0..n {
                for len in 1..=n - at {
                    let hits: Vec<usize> = (0..out)
                        .filter(|&o| {
                            let first = (o * s) as isize - pad as isize;
                            let last = first + k as isize - 1;
                            last >= at as isize && first < (at + len) as isize
                        })
                        .collect();
                    let (lo, hi) = reach(at, len, k, s, pad, out);
                    assert_eq!((lo..hi).collect::<Vec<_>>(), hits, "k{k} s{s} p{pad} {at}+{len}");
                }
            }
        }
    }
}
