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
