//! VGG-11 and VGG-16 (Simonyan & Zisserman 2014), with and without batch norm, as torchvision
//! builds them: `features` (3×3 convolutions with bias, padding 1, then batch norm for the
//! `_bn` variants, ReLU; 2×2 max-pools), `avgpool` (adaptive average pooling to 7×7),
//! `classifier` (4096 → 4096 → classes, ReLU and dropout between).
//!
//! Named layers are the torchvision module paths, each the module's output as a PyTorch
//! forward hook sees it: `features.0` (conv), `features.1` (ReLU), ... (batch norms and
//! max-pools included), `avgpool`, then the classifier's linear and ReLU modules
//! (`classifier.0`, `classifier.1`, `classifier.3`, `classifier.4`, `classifier.6`;
//! dropout is the identity at inference and has no name).

use candle_nn::VarBuilder;

use super::layer::Tensors;
use super::plain::{Plain, PlainSpec, Spec};
use super::{Architecture, InputSpec, Model};

/// A max-pool in a VGG configuration (the numbers are conv widths).
const M: usize = 0;
/// torchvision's configuration "A".
const CFG_11: &[usize] = &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M];
/// torchvision's configuration "D".
const CFG_16: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M,
];

pub const VGG11: Architecture = Architecture {
    id: "vgg11",
    summary: "VGG-11 (torchvision naming), 132.9M parameters",
    gradcam_layer: "features.19",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors: tensors::<11, false>,
    build: build::<11, false>,
    graph: None,
};

pub const VGG11_BN: Architecture = Architecture {
    id: "vgg11_bn",
    summary: "VGG-11 with batch norm (torchvision naming), 132.9M parameters",
    gradcam_layer: "features.27",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors: tensors::<11, true>,
    build: build::<11, true>,
    graph: None,
};

pub const VGG16: Architecture = Architecture {
    id: "vgg16",
    summary: "VGG-16 (torchvision naming), 138.4M parameters",
    gradcam_layer: "features.29",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors: tensors::<16, false>,
    build: build::<16, false>,
    graph: None,
};

pub const VGG16_BN: Architecture = Architecture {
    id: "vgg16_bn",
    summary: "VGG-16 with batch norm (torchvision naming), 138.4M parameters",
    gradcam_layer: "features.42",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors: tensors::<16, true>,
    build: build::<16, true>,
    graph: None,
};

fn id(depth: usize, bn: bool) -> &'static str {
    match (depth, bn) {
        (11, false) => "vgg11",
        (11, true) => "vgg11_bn",
        (16, false) => "vgg16",
        _ => "vgg16_bn",
    }
}

fn check_input(input: &InputSpec) -> Result<(), String> {
    if input.channels != 3 {
        return Err(format!(
            "VGG takes 3-channel (RGB) input, not {} channel(s)",
            input.channels
        ));
    }
    if input.height < 32 || input.width < 32 {
        return Err(format!(
            "VGG needs an input of at least 32×32 (it halves the size five times), not {}×{}",
            input.height, input.width
        ));
    }
    Ok(())
}

/// The network as torchvision's `make_layers(cfg, batch_norm)` and `VGG.classifier` build it.
fn spec(depth: usize, bn: bool, classes: usize) -> PlainSpec {
    let cfg = if depth == 11 { CFG_11 } else { CFG_16 };
    let mut features = Vec::new();
    let mut cin = 3;
    for &v in cfg {
        if v == M {
            features.push(Spec::MaxPool {
                k: 2,
                stride: 2,
                pad: 0,
            });
        } else {
            features.push(Spec::Conv {
                cin,
                cout: v,
                k: 3,
                stride: 1,
                pad: 1,
            });
            if bn {
                features.push(Spec::Norm(v));
            }
            features.push(Spec::Relu);
            cin = v;
        }
    }
    PlainSpec {
        id: id(depth, bn),
        features: features.into_iter().enumerate().collect(),
        pool: (7, 7),
        classifier: vec![
            (
                0,
                Spec::Linear {
                    cin: 512 * 7 * 7,
                    cout: 4096,
                },
            ),
            (1, Spec::Relu),
            (3, Spec::Linear { cin: 4096, cout: 4096 }),
            (4, Spec::Relu),
            (
                6,
                Spec::Linear {
                    cin: 4096,
                    cout: classes,
                },
            ),
        ],
    }
}

fn tensors<const DEPTH: usize, const BN: bool>(input: &InputSpec, classes: usize) -> Tensors {
    spec(DEPTH, BN, classes).net(input).tensors
}

fn build<const DEPTH: usize, const BN: bool>(
    vb: VarBuilder,
    input: &InputSpec,
    classes: usize,
) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(Plain::new(vb, spec(DEPTH, BN, classes), input, classes)?))
}
