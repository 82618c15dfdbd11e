//! Deletion and insertion (Petsiuk, Das & Saenko 2018, "RISE"). The pixels are ordered by
//! the map as drawn ([`super::pixel_values`], highest first, ties by position), all
//! channels of a pixel together. In `steps` steps of `⌊H·W/steps⌋` pixels, deletion moves
//! them from the image to 0 (in the preprocessed input: the dataset mean) and insertion from
//! a blurred copy of the image to the image. Each curve is the target's softmax probability
//! at the `steps + 1` inputs; its area is the trapezoid rule on [0, 1]. A faithful map makes
//! deletion fall fast (a small area) and insertion rise fast (a large one).

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::models::{Model, Tap};

/// Both curves of one map and their areas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    pub deletion: Vec<f32>,
    pub insertion: Vec<f32>,
    pub deletion_auc: f64,
    pub insertion_auc: f64,
}

/// Input numbers per forward batch: 3 images at 224×224×3. Measured on EfficientNet-Lite0
/// (two photographs, two maps, 56 steps): batches of 1 to 5 took 4.7–4.9 s, 10 took 5.9 s
/// and 20 took 7.2 s — small batches keep the activations in cache, and more of them run
/// in parallel.
const BATCH_ELEMENTS: usize = 1 << 19;
const MAX_BATCH: usize = 64;

/// Pixel indices, highest value first; ties keep their order (a stable sort, as NumPy's
/// `argsort(-v, kind="stable")`).
pub fn order(values: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    idx
}

/// The Gaussian kernel of the insertion blur: 11 taps, σ = 5.
fn kernel() -> [f32; 11] {
    let mut k = [0f32; 11];
    for (i, v) in k.iter_mut().enumerate() {
        let d = i as f32 - 5.0;
        *v = (-(d * d) / (2.0 * 25.0)).exp();
    }
    let s: f32 = k.iter().sum();
    k.map(|v| v / s)
}

/// Reflect padding as PyTorch's `reflect` (the edge itself is not repeated).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// The image blurred channel by channel (separable, reflect padding): where insertion starts.
pub fn blur(data: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    let k = kernel();
    let mut out = vec![0f32; data.len()];
    let mut tmp = vec![0f32; h * w];
    for ch in 0..c {
        let plane = &data[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = (0..11)
                    .map(|j| k[j] * plane[y * w + reflect(x as isize + j as isize - 5, w)])
                    .sum();
            }
        }
        for y in 0..h {
            for x in 0..w {
                out[ch * h * w + y * w + x] = (0..11)
                    .map(|j| k[j] * tmp[reflect(y as isize + j as isize - 5, h) * w + x])
                    .sum();
            }
        }
    }
    out
}

/// The area under a curve sampled at `0, 1/steps, …, 1`, by the trapezoid rule.
pub fn auc(curve: &[f32]) -> f64 {
    let steps = curve.len().saturating_sub(1).max(1) as f64;
    curve.windows(2).map(|w| (w[0] as f64 + w[1] as f64) / 2.0).sum::<f64>() / steps
}

/// One curve: the scores of the inputs that move the first `s·per` pixels of `order` from
/// `start` to `finish`, for `s = 0..=steps`. `score` maps a batch `(n, C, H, W)` to one
/// number per input.
pub fn curve(
    score: &(dyn Fn(&Tensor) -> Result<Vec<f32>> + Sync),
    start: &[f32],
    finish: &[f32],
    dims: (usize, usize, usize),
    order: &[usize],
    steps: usize,
) -> Result<Vec<f32>> {
    let (c, h, w) = dims;
    let hw = h * w;
    let per = hw / steps.max(1);
    let batch = (BATCH_ELEMENTS / (c * hw).max(1)).clamp(1, MAX_BATCH);
    let points: Vec<usize> = (0..=steps).collect();
    // Chunks of nearly equal size, run in parallel; scores are kept in step order.
    let chunks = points.len().div_ceil(batch);
    let size = points.len().div_ceil(chunks.max(1)).max(1);
    let parts = points
        .par_chunks(size)
        .map(|chunk| {
            let mut data = Vec::with_capacity(chunk.len() * c * hw);
            for &s in chunk {
                let mut moved = vec![false; hw];
                for &p in &order[..(s * per).min(order.len())] {
                    moved[p] = true;
                }
                for ch in 0..c {
                    let at = ch * hw;
                    data.extend((0..hw).map(|i| if moved[i] { finish[at + i] } else { start[at + i] }));
                }
            }
            let t = Tensor::from_vec(data, (chunk.len(), c, h, w), &Device::Cpu)?;
            score(&t)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.into_iter().flatten().collect())
}

/// Deletion and insertion for a model's target class, with pixels ranked by `values`
/// (one per input pixel). `x` is the preprocessed input `(1, C, H, W)`.
pub fn curves(model: &dyn Model, x: &Tensor, target: usize, values: &[f32], steps: usize) -> Result<Curves> {
    let (_, c, h, w) = x.dims4()?;
    let image = x.flatten_all()?.to_vec1::<f32>()?;
    let score = |batch: &Tensor| -> Result<Vec<f32>> {
        let logits = model.forward(&batch.to_dtype(x.dtype())?, &mut Tap::default())?;
        let p = candle_nn::ops::softmax(&logits.to_dtype(candle_core::DType::F32)?, 1)?;
        Ok(p.narrow(1, target, 1)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let order = order(values);
    let deletion = curve(&score, &image, &vec![0f32; image.len()], (c, h, w), &order, steps)?;
    let insertion = curve(&score, &blur(&image, c, h, w), &image, (c, h, w), &order, steps)?;
    Ok(Curves {
        deletion_auc: auc(&deletion),
        insertion_auc: auc(&insertion),
        deletion,
        insertion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_mirrors_without_the_edge() {
        let got: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect(-2, 1), 0);
    }

    #[test]
    fn blur_keeps_constants_and_sums_to_one() {
        let k = kernel();
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(blur(&[2.5; 3 * 7 * 9], 3, 7, 9).iter().all(|v| (v - 2.5).abs() < 1e-5));
    }

    #[test]
    fn trapezoid_area() {
        assert!((auc(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((auc(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
        assert!((auc(&[0.0, 1.0, 1.0, 1.0, 1.0]) - 0.875).abs() < 1e-12);
    }
}
