//! LeNet-5 as in the classic digit recogniser, with ReLU and max pooling:
//! conv 1→6 5×5 pad 2, ReLU, max-pool 2 → conv 6→16 5×5, ReLU, max-pool 2 →
//! fc 400→120, ReLU → fc 120→84, ReLU → fc 84→classes.
//!
//! Named layers follow the tensor names (`conv1` is the convolution's output before its
//! ReLU, as a PyTorch forward hook on `conv1` would see it); `relu1`, `pool1`, ... name the
//! points after each activation and pooling.

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};

use super::{Architecture, InputSpec, LayerInfo, LayerKind, Model, Tap};
use crate::ops::max_pool2d;

pub const ARCH: Architecture = Architecture {
    id: "lenet5",
    summary: "LeNet-5 (two 5×5 convolutions with max pooling, three fully connected layers), 28×28 input",
    gradcam_layer: "relu2",
    check_input,
    tensors,
    build,
};

fn check_input(input: &InputSpec) -> Result<(), String> {
    if input.height != 28 || input.width != 28 {
        return Err(format!(
            "lenet5 takes a 28×28 input (its first fully connected layer expects 16×5×5), not {}×{}",
            input.height, input.width
        ));
    }
    Ok(())
}

fn tensors(input: &InputSpec, classes: usize) -> Vec<(String, Vec<usize>)> {
    let c = input.channels;
    [
        ("conv1.weight", vec![6, c, 5, 5]),
        ("conv1.bias", vec![6]),
        ("conv2.weight", vec![16, 6, 5, 5]),
        ("conv2.bias", vec![16]),
        ("fc1.weight", vec![120, 400]),
        ("fc1.bias", vec![120]),
        ("fc2.weight", vec![84, 120]),
        ("fc2.bias", vec![84]),
        ("fc3.weight", vec![classes, 84]),
        ("fc3.bias", vec![classes]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect()
}

pub struct LeNet5 {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    layers: Vec<LayerInfo>,
    classes: usize,
}

fn layer(name: &str, kind: LayerKind, shape: &[usize], parameters: usize) -> LayerInfo {
    let weight = (parameters > 0).then(|| format!("{name}.weight"));
    LayerInfo {
        name: name.to_string(),
        kind,
        output_shape: shape.to_vec(),
        parameters,
        weight,
    }
}

fn build(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(LeNet5::new(vb, input.channels, classes)?))
}

impl LeNet5 {
    pub fn new(vb: VarBuilder, channels: usize, classes: usize) -> candle_core::Result<Self> {
        let pad2 = Conv2dConfig {
            padding: 2,
            ..Default::default()
        };
        let conv1 = candle_nn::conv2d(channels, 6, 5, pad2, vb.pp("conv1"))?;
        let conv2 = candle_nn::conv2d(6, 16, 5, Default::default(), vb.pp("conv2"))?;
        let fc1 = candle_nn::linear(400, 120, vb.pp("fc1"))?;
        let fc2 = candle_nn::linear(120, 84, vb.pp("fc2"))?;
        let fc3 = candle_nn::linear(84, classes, vb.pp("fc3"))?;
        use LayerKind::*;
        let layers = vec![
            layer("conv1", Conv, &[6, 28, 28], 6 * channels * 25 + 6),
            layer("relu1", Relu, &[6, 28, 28], 0),
            layer("pool1", MaxPool, &[6, 14, 14], 0),
            layer("conv2", Conv, &[16, 10, 10], 16 * 6 * 25 + 16),
            layer("relu2", Relu, &[16, 10, 10], 0),
            layer("pool2", MaxPool, &[16, 5, 5], 0),
            layer("fc1", Linear, &[120], 400 * 120 + 120),
            layer("relu3", Relu, &[120], 0),
            layer("fc2", Linear, &[84], 120 * 84 + 84),
            layer("relu4", Relu, &[84], 0),
            layer("fc3", Linear, &[classes], 84 * classes + classes),
        ];
        Ok(LeNet5 {
            conv1,
            conv2,
            fc1,
            fc2,
            fc3,
            layers,
            classes,
        })
    }
}

impl Model for LeNet5 {
    fn arch(&self) -> &'static str {
        ARCH.id
    }
    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, x: &Tensor, tap: &mut Tap) -> candle_core::Result<Tensor> {
        let x = tap.at("conv1", self.conv1.forward(x)?)?;
        let x = tap.at("relu1", tap.relu(&x)?)?;
        let x = tap.at("pool1", max_pool2d(&x, 2, 2, 0)?)?;
        let x = tap.at("conv2", self.conv2.forward(&x)?)?;
        let x = tap.at("relu2", tap.relu(&x)?)?;
        let x = tap.at("pool2", max_pool2d(&x, 2, 2, 0)?)?;
        let x = x.flatten_from(1)?;
        let x = tap.at("fc1", self.fc1.forward(&x)?)?;
        let x = tap.at("relu3", tap.relu(&x)?)?;
        let x = tap.at("fc2", self.fc2.forward(&x)?)?;
        let x = tap.at("relu4", tap.relu(&x)?)?;
        tap.at("fc3", self.fc3.forward(&x)?)
    }
}
