//! LayerCAM (Jiang et al. 2021, "LayerCAM: Exploring hierarchical class activation maps
//! for localization"): each location's activation weighted by the positive part of its own
//! gradient, summed over channels, `relu(Σ_k relu(∂S_c/∂A_k) ⊙ A_k)`. Unlike Grad-CAM's
//! one weight per channel, the weights vary over the map, which keeps detail at earlier,
//! higher-resolution layers.

use candle_core::Tensor;

use super::gradcam::{Cam, CamRule};
use crate::error::Result;

/// LayerCAM's rule: the activation times the positive part of its own gradient.
#[derive(Debug, Clone, Default)]
pub struct LayerCamRule;

impl CamRule for LayerCamRule {
    const NAME: &'static str = "layercam";
    const TITLE: &'static str = "LayerCAM";
    const DEFINITION: &'static str =
        "Every position of every feature map weighted by the positive part of its own gradient, summed over the maps: finer than Grad-CAM, and usable at early layers too (Jiang et al. 2021).";
    fn map(a: &Tensor, g: &Tensor) -> Result<Tensor> {
        Ok((a * g.relu()?)?.sum(0)?.relu()?)
    }
}

pub type LayerCam = Cam<LayerCamRule>;
