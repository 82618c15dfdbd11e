//! HiResCAM (Draelos & Carin 2020, "Use HiResCAM instead of Grad-CAM for faithful
//! explanations of convolutional neural networks"): the element-wise product of the
//! gradient and the activation, summed over channels, `relu(Σ_k ∂S_c/∂A_k ⊙ A_k)`.
//! Grad-CAM averages each channel's gradient first; HiResCAM keeps where inside a map the
//! gradient is large, so for models ending in global average pooling and one linear layer
//! it is exactly the score's share per location.

use candle_core::Tensor;

use super::gradcam::{Cam, CamRule};
use crate::error::Result;

/// HiResCAM's rule: the gradient times the activation, location by location.
#[derive(Debug, Clone, Default)]
pub struct HiResCamRule;

impl CamRule for HiResCamRule {
    const NAME: &'static str = "hirescam";
    const TITLE: &'static str = "HiResCAM";
    const DEFINITION: &'static str =
        "The layer's feature maps multiplied position by position with the class score's gradient, summed over the maps: unlike Grad-CAM it keeps where in each map the gradient is large (Draelos & Carin 2020).";
    fn map(a: &Tensor, g: &Tensor) -> Result<Tensor> {
        Ok((a * g)?.sum(0)?.relu()?)
    }
}

pub type HiResCam = Cam<HiResCamRule>;
