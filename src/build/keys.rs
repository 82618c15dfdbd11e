//! Every cache key the build uses. Keys hash the inputs' bytes and parameters, never ids or
//! paths, so page-level edits (ids, captions, notes, templates) reuse every entry.

use serde_json::{json, Value};

use crate::cache::KeyHasher;
use crate::config::ModelConfig;
use crate::methods::MethodSpec;

/// A model's weight pictures depend on its architecture and its weights' bytes.
pub fn weights(mc: &ModelConfig, weights_hash: &str) -> String {
    KeyHasher::new("weight-pictures")
        .field("arch", mc.arch.id)
        .field("weights", weights_hash)
        .finish()
}

/// The forward pass of a pair depends on the weights, the image and how it is prepared.
pub fn forward(mc: &ModelConfig, weights_hash: &str, image_hash: &str) -> String {
    let i = &mc.input;
    let input = json!({"height": i.height, "width": i.width, "channels": i.channels, "mean": i.mean, "std": i.std});
    KeyHasher::new("forward")
        .field("arch", mc.arch.id)
        .field("weights", weights_hash)
        .field("classes", mc.classes.len().to_string())
        .field("input", input.to_string())
        .field("image", image_hash)
        .finish()
}

/// One method's result for one class: the forward pass's key (weights, image, input
/// settings), the method and its parameters as applied, and the class.
pub fn method(forward: &str, method: &MethodSpec, params: &Value, class: usize) -> String {
    KeyHasher::new("method")
        .field("forward", forward)
        .field("method", method.name())
        .field("params", params.to_string())
        .field("class", class.to_string())
        .finish()
}
