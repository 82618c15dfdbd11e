//! Grad-CAM (Selvaraju et al. 2017): at a layer with maps `A_k`, weights
//! `w_k = mean_ij ∂S_c/∂A_k[i,j]` and the map `relu(Σ_k w_k A_k)` at the layer's resolution.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::{layer_of, Ctx, Map, Output, View};
use crate::error::Result;

/// `relu(Σ_k w_k A_k)` for activations `A` `(K, h, w)` and weights `(K)`.
pub fn weighted_map(a: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let k = weights.dim(0)?;
    Ok(a.broadcast_mul(&weights.reshape((k, 1, 1))?)?.sum(0)?.relu()?)
}

pub fn run(cx: &Ctx, layer: &str) -> Result<Output> {
    let (a, g) = layer_of(cx.shared()?, layer)?;
    let weights = g.mean((1, 2))?;
    Ok(Output::Map(Map {
        data: weighted_map(&a, &weights)?,
        view: View::Cam,
        layer: Some(layer.to_string()),
        metrics: BTreeMap::new(),
    }))
}
