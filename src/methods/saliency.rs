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
    fn run(&self, cx: &Ctx) -> Result<Output> {
        Ok(input_map(cx.shared()?.input.squeeze(0)?, View::Unsigned))
    }
}
