//! AlexNet as torchvision builds it (the "one weird trick" variant, 64-192-384-256-256
//! filters): `features` (five convolutions with bias, ReLU, three 3×3/2 max-pools),
//! `avgpool` (adaptive average pooling to 6×6), `classifier` (dropout, 9216 → 4096, ReLU,
//! dropout, 4096 → 4096, ReLU, 4096 → classes).
//!
//! Named layers are the torchvision module paths, each the module's output as a PyTorch
//! forward hook sees it: `features.0` … `features.12`, `avgpool`, then `classifier.1`,
//! `classifier.2`, `classifier.4`, `classifier.5`, `classifier.6` (dropouts are the
//! identity at inference and have no name).

use candle_nn::VarBuilder;

use super::layer::Tensors;
use super::plain::{Plain, PlainSpec, Spec};
use super::{Architecture, InputSpec, Model};

pub const ARCH: Architecture = Architecture {
    id: "alexnet",
    summary: "AlexNet (torchvision naming), 61.1M parameters",
    gradcam_layer: "features.11",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors,
    build,
    graph: None,
};

/// The smallest input whose last max-pool still has a 3×3 window.
const MIN_SIZE: usize = 63;

fn check_input(input: &InputSpec) -> Result<(), String> {
    if input.channels != 3 {
        return Err(format!(
            "alexnet takes 3-channel (RGB) input, not {} channel(s)",
            input.channels
        ));
    }
    if input.height < MIN_SIZE || input.width < MIN_SIZE {
        return Err(format!(
            "alexnet needs an input of at least {MIN_SIZE}×{MIN_SIZE} (a stride-4 convolution and three \
             3×3/2 max-pools), not {}×{}",
            input.height, input.width
        ));
    }
    Ok(())
}

fn spec(classes: usize) -> PlainSpec {
    let conv = |cin, cout, k, stride, pad| Spec::Conv {
        cin,
        cout,
        k,
        stride,
        pad,
    };
    let pool = Spec::MaxPool {
        k: 3,
        stride: 2,
        pad: 0,
    };
    let features = vec![
        conv(3, 64, 11, 4, 2),
        Spec::Relu,
        pool,
        conv(64, 192, 5, 1, 2),
        Spec::Relu,
        pool,
        conv(192, 384, 3, 1, 1),
        Spec::Relu,
        conv(384, 256, 3, 1, 1),
        Spec::Relu,
        conv(256, 256, 3, 1, 1),
        Spec::Relu,
        pool,
    ];
    PlainSpec {
        id: "alexnet",
        features: features.into_iter().enumerate().collect(),
        pool: (6, 6),
        classifier: vec![
            (
                1,
                Spec::Linear {
                    cin: 256 * 6 * 6,
                    cout: 4096,
                },
            ),
            (2, Spec::Relu),
            (4, Spec::Linear { cin: 4096, cout: 4096 }),
            (5, Spec::Relu),
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

fn tensors(input: &InputSpec, classes: usize) -> Tensors {
    spec(classes).net(input).tensors
}

fn build(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(Plain::new(vb, spec(classes), input, classes)?))
}

#[cfg(test)]
mod tests {
    use super::super::nn::out_size;

    /// Whether an input of `n` pixels survives the features (every max-pool window fits).
    fn min_fits(n: usize) -> bool {
        if n + 4 < 11 {
            return false;
        }
        let n = out_size(n, 11, 4, 2);
        if n < 3 {
            return false;
        }
        let n = out_size(n, 3, 2, 0);
        if n < 3 {
            return false;
        }
        out_size(n, 3, 2, 0) >= 3
    }

    #[test]
    fn smallest_input() {
        assert!(min_fits(super::MIN_SIZE));
        assert!(!min_fits(super::MIN_SIZE - 1));
        assert!(min_fits(224));
    }
}
