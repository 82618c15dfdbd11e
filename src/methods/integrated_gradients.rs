//! Integrated Gradients (Sundararajan, Taly & Yan 2017):
//! `IG(x) = (x − x') ⊙ ∫₀¹ ∂S_c/∂x (x' + α(x − x')) dα`, the integral by the trapezoid rule
//! on `steps` equal intervals (`steps + 1` gradient evaluations, run as batches).
//! Completeness says `Σ IG = S_c(x) − S_c(x')`; the gap relative to `|S_c(x) − S_c(x')|`
//! is reported with the map.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Ctx, Map, Method, ModelInfo, Output, ParamError, Placement, View};
use crate::error::Result;
use crate::models::Input;
use crate::models::{gradients, Select};

/// The reference input of Integrated Gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// All zeros in the model's (normalised) input space: the mean image.
    #[default]
    Zeros,
    /// Black pixels: `(0 − mean)/std` per channel.
    Black,
    /// The input blurred with a Gaussian of σ = min(height, width)/20 pixels.
    Blur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegratedGradients {
    /// Intervals of the trapezoid rule (`steps + 1` gradients).
    pub steps: usize,
    pub baseline: Baseline,
}

impl Default for IntegratedGradients {
    fn default() -> Self {
        IntegratedGradients {
            steps: 50,
            baseline: Baseline::Zeros,
        }
    }
}

impl Method for IntegratedGradients {
    fn name(&self) -> &'static str {
        "integrated-gradients"
    }
    fn title(&self) -> &'static str {
        "Integrated Gradients"
    }
    fn definition(&self) -> &'static str {
        "The input gradient averaged along the straight path from a baseline (black by default) to the input, times input − baseline: the attributions add up to the score's difference between the two (completeness; Sundararajan et al. 2017)."
    }
    fn params(&self, _: &ModelInfo) -> Value {
        json!({"steps": self.steps, "baseline": self.baseline, "rule": "trapezoid"})
    }
    fn validate(&self, _: &ModelInfo) -> std::result::Result<(), ParamError> {
        if self.steps == 0 {
            return Err(ParamError::new("steps", "must be at least 1"));
        }
        Ok(())
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        run(cx, self.steps, self.baseline)
    }
}

/// The baseline `x'` for an input `(1, C, H, W)`.
pub fn baseline(x: &Tensor, input: &Input, kind: Baseline) -> Result<Tensor> {
    Ok(match kind {
        Baseline::Zeros => x.zeros_like()?,
        Baseline::Black => {
            let (_, c, h, w) = x.dims4()?;
            let v: Vec<f32> = (0..c)
                .flat_map(|k| std::iter::repeat_n(-input.mean[k] / input.std[k], h * w))
                .collect();
            Tensor::from_vec(v, (1, c, h, w), &Device::Cpu)?
        }
        Baseline::Blur => {
            let (_, c, h, w) = x.dims4()?;
            let sigma = h.min(w) as f32 / 20.0;
            let data = x.flatten_all()?.to_vec1::<f32>()?;
            let mut out = Vec::with_capacity(data.len());
            for k in 0..c {
                out.extend(gaussian_blur(&data[k * h * w..(k + 1) * h * w], h, w, sigma));
            }
            Tensor::from_vec(out, (1, c, h, w), &Device::Cpu)?
        }
    })
}

/// Separable Gaussian blur with edge clamping; the kernel reaches 3σ.
fn gaussian_blur(src: &[f32], h: usize, w: usize, sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let ks: f32 = k.iter().sum();
    let k: Vec<f32> = k.iter().map(|v| v / ks).collect();
    let pass = |src: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; src.len()];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut acc = 0.0;
                for (j, kv) in k.iter().enumerate() {
                    let d = j as isize - r;
                    let (yy, xx) = if horizontal {
                        (y, (x + d).clamp(0, w as isize - 1))
                    } else {
                        ((y + d).clamp(0, h as isize - 1), x)
                    };
                    acc += kv * src[yy as usize * w + xx as usize];
                }
                out[y as usize * w + x as usize] = acc;
            }
        }
        out
    };
    pass(&pass(src, true), false)
}

fn run(cx: &Ctx, steps: usize, kind: Baseline) -> Result<Output> {
    let x = cx.x;
    let base = baseline(x, cx.input, kind)?;
    let diff = (x - &base)?;
    let points: Vec<usize> = (0..=steps).collect();
    // Batches run in parallel; their sums are added in order (deterministic).
    let parts = points
        .par_chunks(cx.batch())
        .map(|chunk| -> Result<(Tensor, Vec<f32>)> {
            let alphas: Vec<f32> = chunk.iter().map(|&k| k as f32 / steps as f32).collect();
            // Trapezoid weights: half at both ends.
            let weights: Vec<f32> = chunk
                .iter()
                .map(|&k| {
                    if k == 0 || k == steps {
                        0.5 / steps as f32
                    } else {
                        1.0 / steps as f32
                    }
                })
                .collect();
            let n = chunk.len();
            let a = Tensor::from_vec(alphas, (n, 1, 1, 1), &Device::Cpu)?;
            let batch = base.broadcast_add(&diff.broadcast_mul(&a)?)?;
            super::count_pass();
            let g = gradients(cx.model.model.as_ref(), &batch, &vec![cx.target; n], Select::None)?;
            let wt = Tensor::from_vec(weights, (n, 1, 1, 1), &Device::Cpu)?;
            let scores = g.logits.narrow(1, cx.target, 1)?.flatten_all()?.to_vec1::<f32>()?;
            Ok((g.input.broadcast_mul(&wt)?.sum(0)?, scores))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut total = x.squeeze(0)?.zeros_like()?;
    let (mut f_x, mut f_base) = (0f64, 0f64);
    for (chunk, (part, scores)) in points.chunks(cx.batch()).zip(parts) {
        total = (total + part)?;
        for (i, &k) in chunk.iter().enumerate() {
            if k == steps {
                f_x = scores[i] as f64;
            }
            if k == 0 {
                f_base = scores[i] as f64;
            }
        }
    }
    let attr = (total * diff.squeeze(0)?)?;
    let sum = attr.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    let delta = f_x - f_base;
    let mut metrics = BTreeMap::new();
    metrics.insert("sum_of_attributions".into(), sum);
    metrics.insert("score_difference".into(), delta);
    metrics.insert(
        "completeness_gap".into(),
        if delta.abs() > 0.0 {
            (sum - delta) / delta.abs()
        } else {
            0.0
        },
    );
    Ok(Output::Map(Map {
        data: attr,
        view: View::Signed,
        layer: None,
        placement: Placement::Stretch,
        metrics,
    }))
}
