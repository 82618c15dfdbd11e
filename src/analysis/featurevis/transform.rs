//! Transformation robustness (Olah et al. 2017, §"Transformation robustness"; Mordvintsev
//! et al. 2015): each step the network sees the image padded, shifted, scaled and rotated
//! at random, so only patterns that excite the unit under all of these survive, and the
//! high-frequency patterns that exploit one exact pixel grid do not.
//!
//! Lucid's standard set is pad 12 (grey), jitter 8, scale 0.9–1.1, rotation ±10°, jitter 2,
//! then a resize back to the configured size. Applied one after the other, each would
//! resample (and blur) the image again; here they are composed into one affine map from
//! output pixels to input pixels and sampled once, bilinearly, so one step's transform is
//! one gather and its backward one scatter.

use rand::Rng;

/// The random transforms of one step, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Transforms {
    /// Pixels added on every side, filled with `fill`.
    pub pad: usize,
    pub fill: f32,
    /// A crop of the padded image shifted by 0..jitter pixels on each axis.
    pub jitter: usize,
    /// Zoom drawn uniformly from `[min, max]` about the centre.
    pub scale: [f32; 2],
    /// Rotation drawn uniformly from `[-rotate, rotate]` degrees about the centre.
    pub rotate: f32,
    /// A second, fine shift of 0..fine_jitter pixels after the rotation.
    pub fine_jitter: usize,
}

impl Transforms {
    /// Lucid's `standard_transforms`.
    pub fn standard() -> Self {
        Transforms {
            pad: 12,
            fill: 0.5,
            jitter: 8,
            scale: [0.9, 1.1],
            rotate: 10.0,
            fine_jitter: 2,
        }
    }

    /// For inputs of a few dozen pixels (MNIST's 28×28): shifts of one or two pixels are
    /// already a large part of a digit, and the fill is the black MNIST background.
    pub fn small() -> Self {
        Transforms {
            pad: 2,
            fill: 0.0,
            jitter: 3,
            scale: [0.9, 1.1],
            rotate: 8.0,
            fine_jitter: 0,
        }
    }

    pub fn none() -> Self {
        Transforms {
            pad: 0,
            fill: 0.5,
            jitter: 0,
            scale: [1.0, 1.0],
            rotate: 0.0,
            fine_jitter: 0,
        }
    }

    /// Draws one step's transform for an `size × size` image.
    pub fn draw(&self, h: usize, w: usize, rng: &mut impl Rng) -> Warp {
        let shift = |n: usize, rng: &mut dyn rand::RngCore| if n > 1 { rng.gen_range(0..n) as f32 } else { 0.0 };
        let j1 = [shift(self.jitter, rng), shift(self.jitter, rng)];
        let s = if self.scale[1] > self.scale[0] {
            rng.gen_range(self.scale[0]..=self.scale[1])
        } else {
            self.scale[0]
        };
        let a = if self.rotate > 0.0 {
            rng.gen_range(-self.rotate..=self.rotate).to_radians()
        } else {
            0.0
        };
        let j2 = [shift(self.fine_jitter, rng), shift(self.fine_jitter, rng)];
        Warp::compose(h, w, self, j1, s, a, j2)
    }
}

/// A resampling of a `h × w` image onto itself: each output pixel is a weighted sum of up
/// to four input pixels plus a weight on the fill value.
pub struct Warp {
    pub h: usize,
    pub w: usize,
    fill: f32,
    /// Per output pixel: four input pixel indices (`u32::MAX` outside) and their weights.
    idx: Vec<[u32; 4]>,
    wt: Vec<[f32; 4]>,
    fill_wt: Vec<f32>,
}

impl Warp {
    /// The composed map, output to input, in pixel-centre coordinates `(y, x)`: resize the
    /// final canvas to the output, undo the fine shift, the rotation and the zoom (both
    /// about the canvas centre), the shift and the padding.
    fn compose(h: usize, w: usize, t: &Transforms, j1: [f32; 2], s: f32, a: f32, j2: [f32; 2]) -> Warp {
        let pad = t.pad as f32;
        // Canvas sizes: padded, after the shift (rotation and zoom keep it), after the fine shift.
        let q = [
            h as f32 + 2.0 * pad - t.jitter as f32,
            w as f32 + 2.0 * pad - t.jitter as f32,
        ];
        let q = [q[0].max(1.0), q[1].max(1.0)];
        let r = [
            (q[0] - t.fine_jitter as f32).max(1.0),
            (q[1] - t.fine_jitter as f32).max(1.0),
        ];
        let (sin, cos) = a.sin_cos();
        let n = h * w;
        let mut idx = Vec::with_capacity(n);
        let mut wt = Vec::with_capacity(n);
        let mut fill_wt = Vec::with_capacity(n);
        for oy in 0..h {
            for ox in 0..w {
                // Output centre → final canvas.
                let y = (oy as f32 + 0.5) * r[0] / h as f32 + j2[0];
                let x = (ox as f32 + 0.5) * r[1] / w as f32 + j2[1];
                // Undo rotation and zoom about the centre of the shifted canvas.
                let (cy, cx) = (q[0] / 2.0, q[1] / 2.0);
                let (dy, dx) = (y - cy, x - cx);
                let (ry, rx) = (cos * dy + sin * dx, -sin * dy + cos * dx);
                let (y, x) = (ry / s + cy + j1[0] - pad, rx / s + cx + j1[1] - pad);
                // Bilinear at pixel centres.
                let (fy, fx) = (y - 0.5, x - 0.5);
                let (y0, x0) = (fy.floor(), fx.floor());
                let (ay, ax) = (fy - y0, fx - x0);
                let mut ids = [u32::MAX; 4];
                let mut ws = [0f32; 4];
                let mut outside = 0f32;
                for (k, (dy, dx, wgt)) in [
                    (0, 0, (1.0 - ay) * (1.0 - ax)),
                    (0, 1, (1.0 - ay) * ax),
                    (1, 0, ay * (1.0 - ax)),
                    (1, 1, ay * ax),
                ]
                .into_iter()
                .enumerate()
                {
                    let (yy, xx) = (y0 as i64 + dy, x0 as i64 + dx);
                    if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                        ids[k] = (yy as usize * w + xx as usize) as u32;
                        ws[k] = wgt;
                    } else {
                        outside += wgt;
                    }
                }
                idx.push(ids);
                wt.push(ws);
                fill_wt.push(outside);
            }
        }
        Warp {
            h,
            w,
            fill: t.fill,
            idx,
            wt,
            fill_wt,
        }
    }

    /// Applies the warp to each `h × w` plane of `src` (any number of channels).
    pub fn apply(&self, src: &[f32], out: &mut [f32]) {
        let n = self.h * self.w;
        for (s, o) in src.chunks(n).zip(out.chunks_mut(n)) {
            for (((o, idx), wt), fill) in o.iter_mut().zip(&self.idx).zip(&self.wt).zip(&self.fill_wt) {
                let mut v = fill * self.fill;
                for (&i, w) in idx.iter().zip(wt) {
                    if i != u32::MAX {
                        v += w * s[i as usize];
                    }
                }
                *o = v;
            }
        }
    }

    /// The adjoint of [`Warp::apply`]: adds each output gradient to the input pixels it came from.
    pub fn adjoint(&self, g: &[f32], out: &mut [f32]) {
        let n = self.h * self.w;
        for (g, o) in g.chunks(n).zip(out.chunks_mut(n)) {
            for ((g, idx), wt) in g.iter().zip(&self.idx).zip(&self.wt) {
                for (&i, w) in idx.iter().zip(wt) {
                    if i != u32::MAX {
                        o[i as usize] += w * g;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn no_transform_is_the_identity() {
        let w = Transforms::none().draw(5, 6, &mut ChaCha8Rng::seed_from_u64(0));
        let src: Vec<f32> = (0..60).map(|i| i as f32).collect();
        let mut out = vec![0f32; 60];
        w.apply(&src, &mut out);
        for (a, b) in src.iter().zip(&out) {
            assert!((a - b).abs() < 1e-4, "{a} {b}");
        }
    }

    #[test]
    fn adjoint_is_the_transpose() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for t in [Transforms::standard(), Transforms::small()] {
            let w = t.draw(20, 20, &mut rng);
            let x: Vec<f32> = (0..800).map(|i| ((i * 37) % 17) as f32 / 17.0).collect();
            let g: Vec<f32> = (0..800).map(|i| ((i * 11) % 7) as f32 / 7.0 - 0.5).collect();
            let mut wx = vec![0f32; 800];
            // ⟨W x, g⟩ without the fill's constant = ⟨x, Wᵀ g⟩.
            let zero = Warp { fill: 0.0, ..w };
            zero.apply(&x, &mut wx);
            let mut wtg = vec![0f32; 800];
            zero.adjoint(&g, &mut wtg);
            let a: f64 = wx.iter().zip(&g).map(|(a, b)| (a * b) as f64).sum();
            let b: f64 = x.iter().zip(&wtg).map(|(a, b)| (a * b) as f64).sum();
            assert!((a - b).abs() < 1e-3 * a.abs().max(1.0), "{a} {b}");
        }
    }

    #[test]
    fn padding_fills_the_border() {
        // Zoomed out to 0.5 about the centre with no shift, corners see the fill.
        let t = Transforms {
            scale: [0.5, 0.5],
            ..Transforms::none()
        };
        let w = t.draw(8, 8, &mut ChaCha8Rng::seed_from_u64(0));
        let mut out = vec![0f32; 64];
        w.apply(&[1.0; 64], &mut out);
        assert!(
            (out[0] - 0.5).abs() < 1e-6 && (out[4 * 8 + 4] - 1.0).abs() < 1e-6,
            "{out:?}"
        );
    }
}
