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

/// A matrix row's maps drawn on one scale: the row's method entries, in order.
pub fn row_scale(method_keys: &[String]) -> String {
    KeyHasher::new("row-scale")
        .field("maps", method_keys.join(","))
        .finish()
}

/// A map's deletion and insertion curves: the map's key and the number of steps.
pub fn faithfulness(method_key: &str, steps: usize) -> String {
    KeyHasher::new("faithfulness")
        .field("map", method_key)
        .field("steps", steps.to_string())
        .finish()
}

/// The randomisation test of some methods for one class: the forward pass's key, the
/// methods with their parameters in order, the checkpoints and the seed.
pub fn randomisation(
    forward: &str,
    methods: &[(&str, Value)],
    checkpoints: &[String],
    seed: u64,
    class: usize,
) -> String {
    let listed: Vec<Value> = methods.iter().map(|(n, p)| json!([n, p])).collect();
    KeyHasher::new("randomisation")
        .field("forward", forward)
        .field("methods", Value::Array(listed).to_string())
        .field("checkpoints", checkpoints.join("\n"))
        .field("seed", seed.to_string())
        .field("class", class.to_string())
        .finish()
}
