//! Activation gradients: `∂S_c/∂A` for every named layer, from the shared pass.

use super::{Ctx, Output};
use crate::error::Result;

pub fn run(cx: &Ctx) -> Result<Output> {
    let g = cx.shared()?;
    let layers = g
        .layers
        .iter()
        .map(|(n, _, d)| Ok((n.clone(), d.squeeze(0)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Output::Layers(layers))
}
