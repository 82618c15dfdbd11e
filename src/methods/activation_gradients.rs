//! Activation gradients: `∂S_c/∂A` for every named layer, from the shared pass.

use serde::Deserialize;

use super::{Ctx, Method, Output, OutputKind};
use crate::error::Result;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationGradients {}

impl Method for ActivationGradients {
    fn name(&self) -> &'static str {
        "activation-gradients"
    }
    fn title(&self) -> &'static str {
        "Activation gradients"
    }
    fn definition(&self) -> &'static str {
        "The gradient of the class score with respect to every layer's output: how the score would change if a unit's value changed, layer by layer."
    }
    fn output(&self) -> OutputKind {
        OutputKind::Layers
    }
    fn run(&self, cx: &Ctx) -> Result<Output> {
        let g = cx.shared()?;
        let layers = g
            .layers
            .iter()
            .map(|(n, _, d)| Ok((n.clone(), d.squeeze(0)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Output::Layers(layers))
    }
}
