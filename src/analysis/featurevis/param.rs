//! How a feature visualization's image is parameterised (Olah et al. 2017, "Feature
//! Visualization", Distill, §"Preconditioning and parameterization"): the optimiser moves
//! numbers that are not pixels, and the pixels are a fixed differentiable function of them.
//!
//! - `fft`: the numbers are the image's 2-D Fourier coefficients (a real FFT's half
//!   spectrum, real and imaginary parts), each scaled by `1 / max(f, 1/max(H, W))^decay`
//!   (f the frequency in cycles per pixel), so a step of the optimiser changes low
//!   frequencies as much as high ones: gradient ascent in pixel space is dominated by high
//!   frequencies, which is why it makes noise. The inverse is orthonormal and divided by 4,
//!   as in Lucid.
//! - `pixel`: the numbers are the pixels (before colour and the sigmoid).
//!
//! Both are followed, for RGB models, by colour decorrelation (the 3-channel vector of a
//! pixel is multiplied by the square root of ImageNet's colour covariance, so the optimiser
//! works in decorrelated colour space) and by a sigmoid onto 0..1. Every map here is
//! written with its adjoint, so the input gradient flows back to the numbers exactly.

use std::sync::Arc;

use rand::Rng;
use rand_distr::StandardNormal;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

/// Lucid's `color_correlation_svd_sqrt` (lucid/optvis/param/color.py): the square root,
/// by SVD, of the 3×3 covariance of ImageNet's RGB pixel values. Row `c` gives output
/// channel `c` from the three decorrelated channels.
pub const COLOUR_CORRELATION_SQRT: [[f32; 3]; 3] = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]];

/// [`COLOUR_CORRELATION_SQRT`] divided by its largest column norm, as Lucid applies it (a
/// unit decorrelated step moves no colour channel by more than one).
pub fn decorrelation() -> [[f32; 3]; 3] {
    let m = COLOUR_CORRELATION_SQRT;
    let max = (0..3)
        .map(|j| (0..3).map(|i| m[i][j] * m[i][j]).sum::<f32>().sqrt())
        .fold(0f32, f32::max);
    m.map(|row| row.map(|v| v / max))
}

/// The parameterisation, as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Fourier coefficients scaled by `1 / f^decay`.
    Fft {
        decay: f32,
    },
    Pixel,
}

/// `b` images of `c × h × w` as numbers an optimiser moves.
pub struct Image {
    pub kind: Kind,
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// `fft`: `b × c × h × (w/2+1) × 2` (real, imaginary); `pixel`: `b × c × h × w`.
    pub values: Vec<f32>,
    decorrelate: bool,
    /// Added before the sigmoid.
    offset: f32,
    fft: Option<Spectrum>,
}

/// The per-frequency weights and the FFT plans of the `fft` parameterisation.
struct Spectrum {
    /// `h × (w/2+1)`: the frequency scale times the Hermitian weight (1 on the columns
    /// that have no mirror, 2 elsewhere) times the normalisation `1 / (4·√(hw))`.
    weight: Vec<f32>,
    rows_inv: Arc<dyn Fft<f32>>,
    cols_inv: Arc<dyn Fft<f32>>,
    rows_fwd: Arc<dyn Fft<f32>>,
    cols_fwd: Arc<dyn Fft<f32>>,
}

/// Lucid's `rfft2d_freqs`: `√(fx² + fy²)` in cycles per pixel for the half spectrum.
pub fn frequencies(h: usize, w: usize) -> Vec<f32> {
    let freq = |i: usize, n: usize| {
        let i = i as f32;
        let n = n as f32;
        // numpy's fftfreq: 0, 1/n, …, then negative from index ⌈n/2⌉.
        if i < (n / 2.0).ceil() {
            i / n
        } else {
            (i - n) / n
        }
    };
    let half = w / 2 + 1;
    let mut out = Vec::with_capacity(h * half);
    for y in 0..h {
        let fy = freq(y, h);
        for x in 0..half {
            let fx = freq(x, w);
            out.push((fx * fx + fy * fy).sqrt());
        }
    }
    out
}

impl Image {
    /// Initial numbers drawn from N(0, sd²), as Lucid (sd 0.01).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Kind,
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        decorrelate: bool,
        sd: f32,
        offset: f32,
        rng: &mut impl Rng,
    ) -> Self {
        let half = w / 2 + 1;
        let n = match kind {
            Kind::Fft { .. } => b * c * h * half * 2,
            Kind::Pixel => b * c * h * w,
        };
        let values = (0..n).map(|_| sd * rng.sample::<f32, _>(StandardNormal)).collect();
        let fft = match kind {
            Kind::Fft { decay } => {
                let floor = 1.0 / h.max(w) as f32;
                let norm = 1.0 / (4.0 * ((h * w) as f32).sqrt());
                let weight = frequencies(h, w)
                    .iter()
                    .enumerate()
                    .map(|(i, &f)| {
                        let x = i % half;
                        let hermitian = if x == 0 || (w.is_multiple_of(2) && x == w / 2) {
                            1.0
                        } else {
                            2.0
                        };
                        hermitian * norm / f.max(floor).powf(decay)
                    })
                    .collect();
                let mut p = FftPlanner::new();
                Some(Spectrum {
                    weight,
                    rows_inv: p.plan_fft_inverse(w),
                    cols_inv: p.plan_fft_inverse(h),
                    rows_fwd: p.plan_fft_forward(w),
                    cols_fwd: p.plan_fft_forward(h),
                })
            }
            Kind::Pixel => None,
        };
        Image {
            kind,
            b,
            c,
            h,
            w,
            values,
            decorrelate: decorrelate && c == 3,
            offset,
            fft,
        }
    }

    /// One channel's `h × w` plane from the numbers, before colour: the inverse FFT, or the
    /// numbers themselves.
    fn plane(&self, bc: usize, out: &mut [f32]) {
        let (h, w) = (self.h, self.w);
        match &self.fft {
            None => out.copy_from_slice(&self.values[bc * h * w..(bc + 1) * h * w]),
            Some(s) => {
                let half = w / 2 + 1;
                let v = &self.values[bc * h * half * 2..(bc + 1) * h * half * 2];
                // x[n, m] = Re Σ_k Σ_{l ≤ w/2} weight·X[k, l]·e^{2πi(kn/h + lm/w)}: the real part of
                // a full complex inverse FFT of the weighted half spectrum, which is exactly
                // torch's orthonormal irfft2 (the missing half is the mirrored conjugate).
                let mut z = vec![Complex32::new(0.0, 0.0); h * w];
                for y in 0..h {
                    for x in 0..half {
                        let i = y * half + x;
                        z[y * w + x] = Complex32::new(v[2 * i], v[2 * i + 1]) * s.weight[i];
                    }
                }
                fft2(&mut z, h, w, &s.rows_inv, &s.cols_inv);
                for (o, z) in out.iter_mut().zip(&z) {
                    *o = z.re;
                }
            }
        }
    }

    /// The adjoint of [`Image::plane`]: adds `∂L/∂numbers` of one channel given `g = ∂L/∂plane`.
    fn plane_adjoint(&self, bc: usize, g: &[f32], grad: &mut [f32]) {
        let (h, w) = (self.h, self.w);
        match &self.fft {
            None => grad[bc * h * w..(bc + 1) * h * w]
                .iter_mut()
                .zip(g)
                .for_each(|(a, b)| *a += b),
            Some(s) => {
                let half = w / 2 + 1;
                // ∂x/∂Re X = weight·cos θ and ∂x/∂Im X = −weight·sin θ, so the gradient is
                // weight·(Re, Im) of the forward FFT of g.
                let mut z: Vec<Complex32> = g.iter().map(|&v| Complex32::new(v, 0.0)).collect();
                fft2(&mut z, h, w, &s.rows_fwd, &s.cols_fwd);
                let out = &mut grad[bc * h * half * 2..(bc + 1) * h * half * 2];
                for y in 0..h {
                    for x in 0..half {
                        let i = y * half + x;
                        let v = z[y * w + x] * s.weight[i];
                        out[2 * i] += v.re;
                        out[2 * i + 1] += v.im;
                    }
                }
            }
        }
    }

    /// The images on 0..1, `b × c × h × w`, with what the backward pass needs.
    pub fn pixels(&self) -> Vec<f32> {
        let (c, hw) = (self.c, self.h * self.w);
        let mut lin = vec![0f32; self.b * c * hw];
        for bc in 0..self.b * c {
            self.plane(bc, &mut lin[bc * hw..(bc + 1) * hw]);
        }
        if self.decorrelate {
            let m = decorrelation();
            for img in lin.chunks_mut(3 * hw) {
                for p in 0..hw {
                    let v = [img[p], img[hw + p], img[2 * hw + p]];
                    for (ch, row) in m.iter().enumerate() {
                        img[ch * hw + p] = row[0] * v[0] + row[1] * v[1] + row[2] * v[2];
                    }
                }
            }
        }
        let o = self.offset;
        lin.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-(*v + o)).exp()));
        lin
    }

    /// `∂L/∂numbers` from `∂L/∂pixels`, given the `pixels` these numbers gave.
    pub fn backward(&self, pixels: &[f32], grad_pixels: &[f32]) -> Vec<f32> {
        let (c, hw) = (self.c, self.h * self.w);
        // Through the sigmoid: σ' = σ(1 − σ).
        let mut g: Vec<f32> = pixels.iter().zip(grad_pixels).map(|(p, g)| g * p * (1.0 - p)).collect();
        if self.decorrelate {
            let m = decorrelation();
            for img in g.chunks_mut(3 * hw) {
                for p in 0..hw {
                    let v = [img[p], img[hw + p], img[2 * hw + p]];
                    for j in 0..3 {
                        img[j * hw + p] = m[0][j] * v[0] + m[1][j] * v[1] + m[2][j] * v[2];
                    }
                }
            }
        }
        let mut grad = vec![0f32; self.values.len()];
        for bc in 0..self.b * c {
            self.plane_adjoint(bc, &g[bc * hw..(bc + 1) * hw], &mut grad);
        }
        grad
    }
}

/// An unnormalised 2-D FFT in place (rows, then columns), direction by the plans.
fn fft2(z: &mut [Complex32], h: usize, w: usize, rows: &Arc<dyn Fft<f32>>, cols: &Arc<dyn Fft<f32>>) {
    rows.process(z);
    let mut t = vec![Complex32::new(0.0, 0.0); h * w];
    transpose(z, &mut t, h, w);
    cols.process(&mut t);
    transpose(&t, z, w, h);
}

fn transpose(a: &[Complex32], out: &mut [Complex32], h: usize, w: usize) {
    for y in 0..h {
        for x in 0..w {
            out[x * h + y] = a[y * w + x];
        }
    }
}

/// Adam (Kingma & Ba 2015) with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8), ascending.
pub struct Adam {
    lr: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    pub fn new(lr: f32, n: usize) -> Self {
        Adam {
            lr,
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// Moves `x` up the gradient `g`.
    pub fn step(&mut self, x: &mut [f32], g: &[f32]) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        for i in 0..x.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * g[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * g[i] * g[i];
            let mh = self.m[i] / c1;
            let vh = self.v[i] / c2;
            x[i] += self.lr * mh / (vh.sqrt() + 1e-8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn image(kind: Kind, c: usize, h: usize, w: usize) -> Image {
        Image::new(kind, 2, c, h, w, true, 1.0, 0.3, &mut ChaCha8Rng::seed_from_u64(3))
    }

    /// A real inverse of a known half spectrum: a single cosine of the right size.
    #[test]
    fn fft_inverse_is_a_real_image_of_the_right_size() {
        for (h, w) in [(8, 8), (7, 10), (28, 28), (5, 9)] {
            let mut im = image(Kind::Fft { decay: 0.0 }, 1, h, w);
            im.values.iter_mut().for_each(|v| *v = 0.0);
            // X[1, 0] = 1: x[n, m] = weight·cos(2πn/h).
            let half = w / 2 + 1;
            im.values[2 * half] = 1.0;
            let mut out = vec![0f32; h * w];
            im.plane(0, &mut out);
            assert_eq!(out.len(), h * w);
            let wt = im.fft.as_ref().unwrap().weight[half];
            for n in 0..h {
                for m in 0..w {
                    let want = wt * (2.0 * std::f32::consts::PI * n as f32 / h as f32).cos();
                    assert!((out[n * w + m] - want).abs() < 1e-5, "{h}×{w} at {n},{m}");
                }
            }
        }
    }

    /// ⟨A v, g⟩ = ⟨v, Aᵀ g⟩ for the whole map from numbers to pixels before the sigmoid, by
    /// finite differences through the sigmoid.
    #[test]
    fn backward_matches_finite_differences() {
        for kind in [Kind::Fft { decay: 1.0 }, Kind::Pixel] {
            for c in [1, 3] {
                let mut im = image(kind, c, 6, 7);
                im.values.iter_mut().for_each(|v| *v *= 0.5);
                let n = im.b * c * 6 * 7;
                let g: Vec<f32> = (0..n).map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5).collect();
                let loss = |im: &Image| -> f64 { im.pixels().iter().zip(&g).map(|(p, g)| (p * g) as f64).sum() };
                let px = im.pixels();
                let grad = im.backward(&px, &g);
                for i in (0..im.values.len()).step_by(5) {
                    let e = 1e-2;
                    let v = im.values[i];
                    im.values[i] = v + e;
                    let up = loss(&im);
                    im.values[i] = v - e;
                    let down = loss(&im);
                    im.values[i] = v;
                    let fd = (up - down) / (2.0 * e as f64);
                    assert!(
                        (fd - grad[i] as f64).abs() < 1e-3 * (1.0 + fd.abs()),
                        "{kind:?} c={c} i={i}: {fd} vs {}",
                        grad[i]
                    );
                }
            }
        }
    }

    #[test]
    fn decorrelation_round_trips() {
        let m = decorrelation();
        // Invert by Gauss–Jordan and check M·M⁻¹ = I; its largest column norm is 1.
        let mut a = [[0f64; 6]; 3];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] = m[i][j] as f64;
            }
            a[i][3 + i] = 1.0;
        }
        for col in 0..3 {
            let p = (col..3)
                .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
                .unwrap();
            a.swap(col, p);
            let d = a[col][col];
            a[col].iter_mut().for_each(|v| *v /= d);
            for r in 0..3 {
                if r != col {
                    let f = a[r][col];
                    let pivot = a[col];
                    a[r].iter_mut().zip(pivot).for_each(|(v, p)| *v -= f * p);
                }
            }
        }
        let v = [0.3f64, -1.2, 0.7];
        let fwd: Vec<f64> = (0..3).map(|i| (0..3).map(|j| m[i][j] as f64 * v[j]).sum()).collect();
        let back: Vec<f64> = (0..3).map(|i| (0..3).map(|j| a[i][3 + j] * fwd[j]).sum()).collect();
        for i in 0..3 {
            assert!((back[i] - v[i]).abs() < 1e-9, "{back:?}");
        }
        let norms: Vec<f32> = (0..3)
            .map(|j| (0..3).map(|i| m[i][j] * m[i][j]).sum::<f32>().sqrt())
            .collect();
        assert!((norms.iter().cloned().fold(0.0, f32::max) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn frequencies_follow_numpy() {
        // np.fft.fftfreq(4) = [0, .25, -.5, -.25]; half of 4 columns: [0, .25, -.5].
        let f = frequencies(4, 4);
        assert_eq!(f.len(), 4 * 3);
        assert!((f[1] - 0.25).abs() < 1e-7 && (f[2] - 0.5).abs() < 1e-7);
        assert!((f[2 * 3] - 0.5).abs() < 1e-7 && (f[3 * 3 + 1] - (0.125f32).sqrt()).abs() < 1e-6);
    }
}
