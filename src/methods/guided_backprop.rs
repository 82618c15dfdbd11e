//! Guided backpropagation (Springenberg et al. 2015): the input gradient with every ReLU's
//! backward pass replaced by one that passes a gradient only where both the ReLU's input
//! and the incoming gradient are positive. Drawn signed (sum over channels).

use serde::Deserialize;

use super::{input_map, Ctx, Method, Output, View};
use crate::error::Result;
use crate::models::{guided_gradients, Select};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidedBackprop {}

impl Method for GuidedBackprop {
    fn name(&self) -> &'static str {
        "guided-backprop"
    }
    fn title(&self) -> &'static str {
        "Guided backprop"
    }
    fn definition(&self) -> &'static str {
        "The input gradient with every ReLU passing back only positive gradients, and only where its input was positive: sharp, edge-like maps which, the randomisation test shows, depend little on the class or the weights (Springenberg et al. 2015; Adebayo et al. 2018)."
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        super::count_pass();
        let g = guided_gradients(cx.model.model.as_ref(), cx.x, &[cx.target], Select::None)?;
        Ok(input_map(g.input.squeeze(0)?, View::Signed))
    }
}
