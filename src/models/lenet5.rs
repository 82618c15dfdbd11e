//! LeNet-5 as in the classic digit recogniser, with ReLU and max pooling:
//! conv 1→6 5×5 pad 2, ReLU, max-pool 2 → conv 6→16 5×5, ReLU, max-pool 2 →
//! fc 400→120, ReLU → fc 120→84, ReLU → fc 84→classes.
//!
//! Named layers follow the tensor names (`conv1` is the convolution's output before its
//! ReLU, as a PyTorch forward hook on `conv1` would see it); `relu1`, `pool1`, ... name the
//! points after each activation and pooling.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::layer::{linear_tensors, Net, Tensors};
use super::nn::{linear, Conv, ConvConfig, Linear, Pad};
use super::{Architecture, ChainOp, ChainStep, Field, InputSpec, LayerInfo, LayerKind, Model, Tap};
use crate::ops::max_pool2d;

pub const ARCH: Architecture = Architecture {
    id: "lenet5",
    summary: "LeNet-5 (two 5×5 convolutions with max pooling, three fully connected layers), 28×28 input",
    gradcam_layer: "relu2",
    randomisation: &[],
    unit_layers: &["relu1", "relu2", "relu3", "relu4"],
    check_input,
    tensors,
    build,
    graph: None,
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

/// The layers and the tensors each owns. The training in `train.rs` builds this network on
/// a `VarMap`: the project's convolution takes weight gradients too.
fn net(channels: usize, classes: usize) -> Net {
    use LayerKind as K;
    let conv = |name: &str, cin, cout, pad| {
        let cfg = ConvConfig {
            pad: Pad::Sym(pad),
            ..Default::default()
        };
        Conv::tensors(name, cin, cout, 5, cfg)
    };
    // Receptive fields: 5×5 pad 2, then 2×2 pooling, then 5×5 valid, then 2×2 pooling.
    let f1 = Field::INPUT.then(5, 1, 2);
    let (p1, f2) = (f1.then(2, 2, 0), f1.then(2, 2, 0).then(5, 1, 0));
    let p2 = f2.then(2, 2, 0);
    let mut net = Net::default();
    net.owning(
        LayerInfo::new("conv1", K::Conv, vec![6, 28, 28]).field(f1),
        conv("conv1", channels, 6, 2),
    );
    net.layer(LayerInfo::new("relu1", K::Relu, vec![6, 28, 28]).field(f1));
    net.layer(LayerInfo::new("pool1", K::MaxPool, vec![6, 14, 14]).field(p1));
    net.owning(
        LayerInfo::new("conv2", K::Conv, vec![16, 10, 10]).field(f2),
        conv("conv2", 6, 16, 0),
    );
    net.layer(LayerInfo::new("relu2", K::Relu, vec![16, 10, 10]).field(f2));
    net.layer(LayerInfo::new("pool2", K::MaxPool, vec![16, 5, 5]).field(p2));
    net.owning(
        LayerInfo::new("fc1", K::Linear, vec![120]),
        linear_tensors("fc1", 400, 120),
    );
    net.layer(LayerInfo::new("relu3", K::Relu, vec![120]));
    net.owning(
        LayerInfo::new("fc2", K::Linear, vec![84]),
        linear_tensors("fc2", 120, 84),
    );
    net.layer(LayerInfo::new("relu4", K::Relu, vec![84]));
    net.owning(
        LayerInfo::new("fc3", K::Linear, vec![classes]),
        linear_tensors("fc3", 84, classes),
    );
    net
}

fn tensors(input: &InputSpec, classes: usize) -> Tensors {
    net(input.channels, classes).tensors
}

pub struct LeNet5 {
    conv1: Conv,
    conv2: Conv,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    layers: Vec<LayerInfo>,
    classes: usize,
}

fn build(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(LeNet5::new(vb, input.channels, classes)?))
}

impl LeNet5 {
    pub fn new(vb: VarBuilder, channels: usize, classes: usize) -> candle_core::Result<Self> {
        let pad2 = ConvConfig {
            pad: Pad::Sym(2),
            ..Default::default()
        };
        let conv1 = Conv::new(channels, 6, 5, pad2, vb.pp("conv1"))?;
        let conv2 = Conv::new(6, 16, 5, ConvConfig::default(), vb.pp("conv2"))?;
        let fc1 = linear(400, 120, vb.pp("fc1"))?;
        let fc2 = linear(120, 84, vb.pp("fc2"))?;
        let fc3 = linear(84, classes, vb.pp("fc3"))?;
        let layers = net(channels, classes).layers;
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

/// The named layers in order; `stages` runs them from any one on.
const STAGES: [&str; 11] = [
    "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2", "relu4", "fc3",
];

impl LeNet5 {
    /// The network from stage `start` (an index into [`STAGES`]) on, `x` being the input
    /// of that stage.
    fn stages(&self, mut x: Tensor, tap: &mut Tap, start: usize) -> candle_core::Result<Tensor> {
        for (i, name) in STAGES.iter().enumerate().skip(start) {
            x = match i {
                0 => self.conv1.forward(&x)?,
                3 => self.conv2.forward(&x)?,
                1 | 4 | 7 | 9 => tap.relu(&x)?,
                2 | 5 => max_pool2d(&x, 2, 2, 0)?,
                6 => self.fc1.forward(&x.flatten_from(1)?)?,
                8 => self.fc2.forward(&x)?,
                _ => self.fc3.forward(&x)?,
            };
            x = tap.at(name, x)?;
        }
        Ok(x)
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
        self.stages(x.clone(), tap, 0)
    }
    fn forward_from(&self, layer: &str, x: &Tensor, tap: &mut Tap) -> Option<candle_core::Result<Tensor>> {
        let at = STAGES.iter().position(|s| *s == layer)?;
        Some(self.stages(x.clone(), tap, at + 1))
    }

    /// [`STAGES`] as plain steps (the flatten before `fc1` is implicit in a linear step).
    fn chain(&self) -> Option<Vec<ChainStep>> {
        let conv = |name: &str, out, pad| ChainOp::Conv {
            weight: format!("{name}.weight"),
            bias: Some(format!("{name}.bias")),
            out,
            kernel: 5,
            pad,
            stride: 1,
        };
        let linear = |name: &str, out| ChainOp::Linear {
            weight: format!("{name}.weight"),
            bias: Some(format!("{name}.bias")),
            out,
        };
        let ops = [
            conv("conv1", 6, 2),
            ChainOp::Relu,
            ChainOp::MaxPool { kernel: 2, stride: 2 },
            conv("conv2", 16, 0),
            ChainOp::Relu,
            ChainOp::MaxPool { kernel: 2, stride: 2 },
            linear("fc1", 120),
            ChainOp::Relu,
            linear("fc2", 84),
            ChainOp::Relu,
            linear("fc3", self.classes),
        ];
        Some(
            STAGES
                .iter()
                .zip(ops)
                .map(|(l, op)| ChainStep {
                    layer: l.to_string(),
                    op,
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receptive_fields_follow_the_layers() {
        let n = net(1, 10);
        let field = |name: &str| n.layers.iter().find(|l| l.name == name).and_then(|l| l.field).unwrap();
        // relu1: 5×5 around each pixel.
        assert_eq!(field("relu1").span(0), (-2, 3));
        // pool1 cell 0 pools relu1 rows 0..2: input rows −2..4.
        assert_eq!(field("pool1").span(0), (-2, 4));
        // relu2 cell i sees pool1 rows i..i+5: 14 input rows, every 2.
        assert_eq!(field("relu2").span(0), (-2, 12));
        assert_eq!(field("relu2").span(9), (16, 30));
        assert_eq!(
            field("pool2"),
            Field {
                size: 16,
                stride: 4,
                offset: -2
            }
        );
        assert!(n.layers.iter().find(|l| l.name == "relu3").unwrap().field.is_none());
    }

    #[test]
    fn starting_inside_gives_the_same_logits() {
        use crate::models::Select;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lenet5-mnist.safetensors");
        let spec = InputSpec {
            height: 28,
            width: 28,
            channels: 1,
        };
        let loaded = crate::models::load(&ARCH, &path, &spec, 10).unwrap();
        let m = loaded.model.as_ref();
        let x = Tensor::randn(0f32, 1.0, (3, 1, 28, 28), &candle_core::Device::Cpu).unwrap();
        let names: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
        let mut tap = Tap::new(Select::Only(names), Select::None);
        let logits = m
            .forward(&x, &mut tap)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(logits.iter().any(|&v| v != logits[0]));
        for (name, act) in &tap.activations {
            let from = m.forward_from(name, act, &mut Tap::default()).unwrap().unwrap();
            assert_eq!(
                from.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                logits,
                "from {name}"
            );
        }
        assert!(m.forward_from("nope", &x, &mut Tap::default()).is_none());
    }
}
