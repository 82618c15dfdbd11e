//! Occlusion (Zeiler & Fergus 2014): slide a `window × window` square filled with `baseline`
//! over the input with step `stride`; each pixel's value is the drop in the target's score,
//! `S_c(x) − S_c(x with the window occluded)`, averaged over the windows that cover it.
//! A last row and column of windows flush with the bottom and right edges are added when
//! the stride does not reach them, so every pixel is covered. The occluded inputs run as
//! batches through [`Model::forward_patched`](crate::models::Model::forward_patched), which
//! for some architectures computes only what each window reaches in the early layers.
//! The map is `H×W`, signed: positive where hiding the pixels lowers the score.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{Ctx, Map, Method, ModelInfo, Output, ParamError, Placement, View};
use crate::error::Result;
use crate::models::{Input, Tap};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Occlusion {
    /// Side of the square window, in input pixels (default: 1/7 of the smaller side).
    pub window: Option<usize>,
    /// Step between windows (default: half the window).
    pub stride: Option<usize>,
    /// The value the window is filled with, in the model's normalised input space.
    #[serde(default)]
    pub baseline: f64,
}

impl Occlusion {
    /// The window and stride for an input, with the defaults filled in.
    pub fn geometry(&self, input: &Input) -> (usize, usize) {
        let side = input.height.min(input.width);
        let w = self.window.unwrap_or(((side as f64 / 7.0).round() as usize).max(1));
        (w, self.stride.unwrap_or((w / 2).max(1)))
    }
}

impl Method for Occlusion {
    fn name(&self) -> &'static str {
        "occlusion"
    }
    fn title(&self) -> &'static str {
        "Occlusion"
    }
    fn definition(&self) -> &'static str {
        "Each window of the input is replaced by a baseline, and the drop in the class score is credited to the window's pixels: what the score does when evidence is removed, with no gradient at all (Zeiler & Fergus 2014)."
    }
    fn params(&self, model: &ModelInfo) -> Value {
        let (w, s) = self.geometry(model.input);
        json!({"window": w, "stride": s, "baseline": self.baseline})
    }
    fn validate(&self, model: &ModelInfo) -> std::result::Result<(), ParamError> {
        let (w, s) = self.geometry(model.input);
        let side = model.input.height.min(model.input.width);
        if w == 0 || w > side {
            return Err(ParamError::new(
                "window",
                format!("must be between 1 and {side} (the input's smaller side), not {w}"),
            ));
        }
        if s == 0 {
            return Err(ParamError::new("stride", "must be at least 1"));
        }
        if !self.baseline.is_finite() {
            return Err(ParamError::new("baseline", "must be a finite number"));
        }
        Ok(())
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        let (w, s) = self.geometry(cx.input);
        run(cx, w, s, self.baseline as f32)
    }
}

/// Window origins along one side: every `stride`, plus one flush with the end.
pub fn origins(side: usize, window: usize, stride: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=side - window).step_by(stride).collect();
    if *v.last().unwrap() != side - window {
        v.push(side - window);
    }
    v
}

fn run(cx: &Ctx, window: usize, stride: usize, baseline: f32) -> Result<Output> {
    let (_, c, h, w) = cx.x.dims4()?;
    let model = cx.model.model.as_ref();
    let score = |batch: Tensor| -> Result<Vec<f32>> {
        let logits = model.forward(&batch, &mut Tap::default())?;
        Ok(logits.narrow(1, cx.target, 1)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let base_score = score(cx.x.clone())?[0];
    let windows: Vec<(usize, usize)> = origins(h, window, stride)
        .into_iter()
        .flat_map(|y| origins(w, window, stride).into_iter().map(move |x| (y, x)))
        .collect();
    let mut sum = vec![0f64; h * w];
    let mut count = vec![0u32; h * w];
    // Batches run in parallel; the drops are added in window order (deterministic).
    // Chunks of (nearly) equal size, at most the model's patched batch.
    let chunks = windows.len().div_ceil(model.patched_batch(cx.batch()).max(1));
    let size = windows.len().div_ceil(chunks.max(1)).max(1);
    let scores = windows
        .par_chunks(size)
        .map(|chunk| {
            let patches = Tensor::full(baseline, (chunk.len(), c, window, window), &Device::Cpu)?;
            let logits = model.forward_patched(cx.x, &patches.to_dtype(cx.x.dtype())?, chunk)?;
            Ok(logits.narrow(1, cx.target, 1)?.flatten_all()?.to_vec1::<f32>()?)
        })
        .collect::<Result<Vec<_>>>()?;
    for (&(y0, x0), s) in windows.iter().zip(scores.into_iter().flatten()) {
        let drop = (base_score - s) as f64;
        for y in y0..y0 + window {
            for xx in x0..x0 + window {
                sum[y * w + xx] += drop;
                count[y * w + xx] += 1;
            }
        }
    }
    let map: Vec<f32> = sum
        .iter()
        .zip(&count)
        .map(|(s, &n)| if n > 0 { (s / n as f64) as f32 } else { 0.0 })
        .collect();
    let mut metrics = BTreeMap::new();
    metrics.insert("windows".into(), windows.len() as f64);
    Ok(Output::Map(Map {
        data: Tensor::from_vec(map, (h, w), &Device::Cpu)?,
        view: View::Signed,
        layer: None,
        placement: Placement::Stretch,
        metrics,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_cover_the_side() {
        assert_eq!(super::origins(28, 4, 2).last(), Some(&24));
        assert_eq!(super::origins(10, 4, 4), vec![0, 4, 6]);
        assert_eq!(super::origins(5, 1, 1), vec![0, 1, 2, 3, 4]);
    }
}
