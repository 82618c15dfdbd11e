//! Saliency (Simonyan, Vedaldi & Zisserman 2014): the gradient of the target's score with
//! respect to the input, `∂S_c/∂x`. Drawn as its magnitude (max over channels of |·|).

use serde::Deserialize;

use super::{input_map, Ctx, Method, Output, View};
use crate::error::Result;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saliency {}

impl Method for Saliency {
    fn name(&self) -> &'static str {
        "saliency"
    }
    fn title(&self) -> &'static str {
        "Saliency"
    }
    fn definition(&self) -> &'static str {
        "The gradient of the class score with respect to every input pixel, ∂S_c/∂x, drawn as its magnitude (the largest over channels): how strongly a small change of that pixel would move the score (Simonyan et al. 2014)."
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        Ok(input_map(cx.shared()?.input.squeeze(0)?, View::Unsigned))
    }
}
