//! Named layers and the state-dict tensors they own, listed together.
//!
//! An architecture describes its network once as a [`Net`]: each named layer is pushed with
//! the tensors it owns. The weights file's expected tensors ([`super::Architecture::tensors`])
//! are the concatenation, and each layer's parameter count is the size of its trainable
//! tensors, so neither is written down a second time.

use super::{LayerInfo, LayerKind};

/// Tensors by state-dict name, with their shapes, in the order a state dict lists them.
pub type Tensors = Vec<(String, Vec<usize>)>;

/// Whether a state-dict tensor is a trainable parameter: batch norm's running statistics
/// are stored with the weights but are not parameters (as in PyTorch's `parameters()`).
pub fn is_parameter(name: &str) -> bool {
    !name.ends_with(".running_mean") && !name.ends_with(".running_var")
}

/// The number of trainable numbers among `tensors`.
pub fn parameters(tensors: &[(String, Vec<usize>)]) -> usize {
    tensors
        .iter()
        .filter(|(n, _)| is_parameter(n))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

impl LayerInfo {
    /// A layer without tensors (an activation, a pooling): no parameters, no weight.
    pub fn new(name: impl Into<String>, kind: LayerKind, output_shape: Vec<usize>) -> Self {
        LayerInfo {
            name: name.into(),
            kind,
            output_shape,
            parameters: 0,
            weight: None,
            tensors: Vec::new(),
            field: None,
            group: None,
            residual: false,
        }
    }

    /// Sets the layer's receptive field.
    pub fn field(mut self, field: super::Field) -> Self {
        self.field = Some(field);
        self
    }

    /// Puts the layer in a named stage.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Marks the layer as adding its input to its output (a skip connection).
    pub fn residual(mut self, residual: bool) -> Self {
        self.residual = residual;
        self
    }

    /// Names `tensor` as the layer's weight (for the filter and weight pictures).
    pub fn weight(mut self, tensor: impl Into<String>) -> Self {
        self.weight = Some(tensor.into());
        self
    }

    /// Makes the layer the owner of `tensors`: its parameter count becomes their trainable
    /// size. A convolution or linear layer's own `<name>.weight` among them is its weight.
    pub fn owns(mut self, tensors: &[(String, Vec<usize>)]) -> Self {
        self.parameters = parameters(tensors);
        self.tensors = tensors.iter().map(|(n, _)| n.clone()).collect();
        let own = format!("{}.weight", self.name);
        if matches!(self.kind, LayerKind::Conv | LayerKind::Linear) && self.tensors.contains(&own) {
            self.weight = Some(own);
        }
        self
    }
}

/// A network's named layers and its tensors, built together (see the module docs).
#[derive(Debug, Default)]
pub struct Net {
    pub layers: Vec<LayerInfo>,
    pub tensors: Tensors,
}

impl Net {
    /// Adds a layer that owns no tensors.
    pub fn layer(&mut self, info: LayerInfo) {
        self.layers.push(info);
    }

    /// Adds a layer with the tensors it owns.
    pub fn owning(&mut self, info: LayerInfo, tensors: Tensors) {
        self.layers.push(info.owns(&tensors));
        self.tensors.extend(tensors);
    }
}

/// The tensors of `nn.Linear(cin, cout)` named `prefix` (as `candle_nn::linear` loads them).
pub fn linear_tensors(prefix: &str, cin: usize, cout: usize) -> Tensors {
    vec![
        (format!("{prefix}.weight"), vec![cout, cin]),
        (format!("{prefix}.bias"), vec![cout]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_statistics_are_not_parameters() {
        let t: Tensors = ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|n| (format!("bn.{n}"), vec![8]))
            .collect();
        assert_eq!(parameters(&t), 16);
        let info = LayerInfo::new("bn", LayerKind::BatchNorm, vec![8, 4, 4]).owns(&t);
        assert_eq!((info.parameters, info.tensors.len(), info.weight), (16, 4, None));
        let fc = LayerInfo::new("fc", LayerKind::Linear, vec![3]).owns(&linear_tensors("fc", 5, 3));
        assert_eq!((fc.parameters, fc.weight.as_deref()), (18, Some("fc.weight")));
    }
}
