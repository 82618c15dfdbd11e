//! Gradient × input (Shrikumar et al. 2016): `x ⊙ ∂S_c/∂x`, signed.

use super::{input_map, Ctx, Output, View};
use crate::error::Result;

pub fn run(cx: &Ctx) -> Result<Output> {
    let g = (&cx.shared()?.input * cx.x)?;
    Ok(input_map(g.squeeze(0)?, View::Signed))
}
