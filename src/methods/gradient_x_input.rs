//! Gradient × input (Shrikumar et al. 2016): `x ⊙ ∂S_c/∂x`, signed.

use serde::Deserialize;

use super::{input_map, Ctx, Method, Output, View};
use crate::error::Result;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientXInput {}

impl Method for GradientXInput {
    fn name(&self) -> &'static str {
        "gradient-x-input"
    }
    fn title(&self) -> &'static str {
        "Gradient × input"
    }
    fn definition(&self) -> &'static str {
        "The input gradient times the input, x ⊙ ∂S_c/∂x, summed over channels: a first-order estimate of how much each pixel contributes to the score, signed (Shrikumar et al. 2016)."
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        let g = (&cx.shared()?.input * cx.x)?;
        Ok(input_map(g.squeeze(0)?, View::Signed))
    }
}
