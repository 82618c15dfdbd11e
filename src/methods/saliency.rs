//! Saliency (Simonyan, Vedaldi & Zisserman 2014): the gradient of the target's score with
//! respect to the input, `∂S_c/∂x`. Drawn as its magnitude (max over channels of |·|).

use super::{input_map, Ctx, Output, View};
use crate::error::Result;

pub fn run(cx: &Ctx) -> Result<Output> {
    Ok(input_map(cx.shared()?.input.squeeze(0)?, View::Unsigned))
}
