//! What a model takes: its input size, channels and normalisation.

use super::InputSpec;

#[derive(Debug, Clone)]
pub struct Input {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// Per channel, on the 0..1 pixel scale.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Input {
    pub fn spec(&self) -> InputSpec {
        InputSpec {
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }
}
