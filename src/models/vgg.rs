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
//!
//! This file also holds the plain sequential network that VGG and AlexNet share
//! ([`Plain`]), and PyTorch's adaptive average pooling ([`adaptive_avg_pool2d`]).

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::nn::{BatchNorm, Conv, Pad};
use super::{Architecture, InputSpec, LayerInfo, LayerKind, Model, Tap};
use crate::ops::max_pool2d;

/// A max-pool in a VGG configuration (the numbers are conv widths).
const M: usize = 0;
/// torchvision's configuration "A".
const CFG_11: &[usize] = &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M];
/// torchvision's configuration "D".
const CFG_16: &[usize] = &[
    64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M,
];
const EPS: f64 = 1e-5;

pub const VGG11: Architecture = Architecture {
    id: "vgg11",
    summary: "VGG-11 (torchvision naming), 132.9M parameters",
    gradcam_layer: "features.19",
    check_input,
    tensors: tensors::<11, false>,
    build: build::<11, false>,
};

pub const VGG11_BN: Architecture = Architecture {
    id: "vgg11_bn",
    summary: "VGG-11 with batch norm (torchvision naming), 132.9M parameters",
    gradcam_layer: "features.27",
    check_input,
    tensors: tensors::<11, true>,
    build: build::<11, true>,
};

pub const VGG16: Architecture = Architecture {
    id: "vgg16",
    summary: "VGG-16 (torchvision naming), 138.4M parameters",
    gradcam_layer: "features.29",
    check_input,
    tensors: tensors::<16, false>,
    build: build::<16, false>,
};

pub const VGG16_BN: Architecture = Architecture {
    id: "vgg16_bn",
    summary: "VGG-16 with batch norm (torchvision naming), 138.4M parameters",
    gradcam_layer: "features.42",
    check_input,
    tensors: tensors::<16, true>,
    build: build::<16, true>,
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

fn tensors<const DEPTH: usize, const BN: bool>(_input: &InputSpec, classes: usize) -> Vec<(String, Vec<usize>)> {
    spec(DEPTH, BN, classes).tensors()
}

fn build<const DEPTH: usize, const BN: bool>(
    vb: VarBuilder,
    input: &InputSpec,
    classes: usize,
) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(Plain::new(vb, spec(DEPTH, BN, classes), input, classes)?))
}

// ---------------------------------------------------------------------------------------
// Plain sequential networks (VGG, AlexNet)
// ---------------------------------------------------------------------------------------

/// Output size of a convolution or max-pool along one dimension (PyTorch, floor mode).
/// Callers check beforehand that the input is large enough.
pub(crate) fn out_size(i: usize, k: usize, stride: usize, pad: usize) -> usize {
    (i + 2 * pad - k) / stride + 1
}

/// One module of a `features` or `classifier` sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Spec {
    /// `nn.Conv2d(cin, cout, k, stride, pad)`, with bias.
    Conv {
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    /// `nn.BatchNorm2d(c)` (ε = 1e-5).
    Norm(usize),
    Relu,
    /// `nn.MaxPool2d(k, stride, pad)`.
    MaxPool {
        k: usize,
        stride: usize,
        pad: usize,
    },
    /// `nn.Linear(cin, cout)`.
    Linear {
        cin: usize,
        cout: usize,
    },
}

/// A network `features` → `avgpool` (adaptive average pooling to `pool`) → flatten →
/// `classifier`; modules are given with their index in the torchvision `nn.Sequential`
/// (dropouts are left out, so indices may skip).
pub(crate) struct PlainSpec {
    pub id: &'static str,
    pub features: Vec<(usize, Spec)>,
    pub pool: (usize, usize),
    pub classifier: Vec<(usize, Spec)>,
}

impl PlainSpec {
    fn named(&self) -> impl Iterator<Item = (String, Spec)> + '_ {
        let f = self.features.iter().map(|(i, s)| (format!("features.{i}"), *s));
        let c = self.classifier.iter().map(|(i, s)| (format!("classifier.{i}"), *s));
        f.chain(c)
    }

    /// The state dict's tensors, in torchvision's order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for (name, s) in self.named() {
            match s {
                Spec::Conv { cin, cout, k, .. } => {
                    out.push((format!("{name}.weight"), vec![cout, cin, k, k]));
                    out.push((format!("{name}.bias"), vec![cout]));
                }
                Spec::Norm(c) => out.extend(BatchNorm::tensors(&name, c)),
                Spec::Linear { cin, cout } => {
                    out.push((format!("{name}.weight"), vec![cout, cin]));
                    out.push((format!("{name}.bias"), vec![cout]));
                }
                Spec::Relu | Spec::MaxPool { .. } => {}
            }
        }
        out
    }

    /// The named layers with their output shapes for `input`.
    pub fn layers(&self, input: &InputSpec) -> Vec<LayerInfo> {
        let (mut c, mut h, mut w) = (input.channels, input.height, input.width);
        let mut out = Vec::new();
        let info = |name: String, kind, shape: Vec<usize>, parameters, weight: bool| {
            let weight = weight.then(|| format!("{name}.weight"));
            LayerInfo {
                name,
                kind,
                output_shape: shape,
                parameters,
                weight,
            }
        };
        for (i, s) in &self.features {
            let name = format!("features.{i}");
            match *s {
                Spec::Conv {
                    cin,
                    cout,
                    k,
                    stride,
                    pad,
                } => {
                    (c, h, w) = (cout, out_size(h, k, stride, pad), out_size(w, k, stride, pad));
                    let p = Conv::params(cin, cout, k, 1, true);
                    out.push(info(name, LayerKind::Conv, vec![c, h, w], p, true));
                }
                Spec::Norm(n) => out.push(info(
                    name,
                    LayerKind::BatchNorm,
                    vec![c, h, w],
                    BatchNorm::params(n),
                    false,
                )),
                Spec::Relu => out.push(info(name, LayerKind::Relu, vec![c, h, w], 0, false)),
                Spec::MaxPool { k, stride, pad } => {
                    (h, w) = (out_size(h, k, stride, pad), out_size(w, k, stride, pad));
                    out.push(info(name, LayerKind::MaxPool, vec![c, h, w], 0, false));
                }
                Spec::Linear { .. } => unreachable!("no linear layer in features"),
            }
        }
        let (ph, pw) = self.pool;
        out.push(info("avgpool".into(), LayerKind::AvgPool, vec![c, ph, pw], 0, false));
        let mut n = c * ph * pw;
        for (i, s) in &self.classifier {
            let name = format!("classifier.{i}");
            match *s {
                Spec::Linear { cin, cout } => {
                    n = cout;
                    out.push(info(name, LayerKind::Linear, vec![n], cin * cout + cout, true));
                }
                Spec::Relu => out.push(info(name, LayerKind::Relu, vec![n], 0, false)),
                _ => unreachable!("only linear and ReLU layers in the classifier"),
            }
        }
        out
    }
}

enum Op {
    Conv(Conv),
    Norm(BatchNorm),
    Relu,
    MaxPool { k: usize, stride: usize, pad: usize },
    Linear(Linear),
}

impl Op {
    fn new(vb: VarBuilder, s: Spec) -> candle_core::Result<Op> {
        Ok(match s {
            Spec::Conv {
                cin,
                cout,
                k,
                stride,
                pad,
            } => Op::Conv(Conv::new(vb, cin, cout, k, stride, Pad::Sym(pad), 1, true)?),
            Spec::Norm(c) => Op::Norm(BatchNorm::new(vb, c, EPS)?),
            Spec::Relu => Op::Relu,
            Spec::MaxPool { k, stride, pad } => Op::MaxPool { k, stride, pad },
            Spec::Linear { cin, cout } => Op::Linear(candle_nn::linear(cin, cout, vb)?),
        })
    }

    fn run(&self, x: &Tensor, tap: &Tap) -> candle_core::Result<Tensor> {
        match self {
            Op::Conv(c) => c.forward(x),
            Op::Norm(b) => b.forward(x),
            Op::Relu => tap.relu(x),
            Op::MaxPool { k, stride, pad } => max_pool2d(x, *k, *stride, *pad),
            Op::Linear(l) => l.forward(x),
        }
    }
}

/// A plain sequential network built from a [`PlainSpec`].
pub(crate) struct Plain {
    id: &'static str,
    features: Vec<(String, Op)>,
    pool: (usize, usize),
    classifier: Vec<(String, Op)>,
    layers: Vec<LayerInfo>,
    classes: usize,
}

impl Plain {
    pub fn new(vb: VarBuilder, spec: PlainSpec, input: &InputSpec, classes: usize) -> candle_core::Result<Self> {
        let layers = spec.layers(input);
        let ops = |list: &[(usize, Spec)], group: &str| -> candle_core::Result<Vec<(String, Op)>> {
            list.iter()
                .map(|(i, s)| {
                    let name = format!("{group}.{i}");
                    Ok((name.clone(), Op::new(vb.pp(&name), *s)?))
                })
                .collect()
        };
        Ok(Plain {
            id: spec.id,
            features: ops(&spec.features, "features")?,
            pool: spec.pool,
            classifier: ops(&spec.classifier, "classifier")?,
            layers,
            classes,
        })
    }
}

impl Model for Plain {
    fn arch(&self) -> &'static str {
        self.id
    }
    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, x: &Tensor, tap: &mut Tap) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for (name, op) in &self.features {
            let y = op.run(&x, tap)?;
            x = tap.at(name, y)?;
        }
        let x = tap.at("avgpool", adaptive_avg_pool2d(&x, self.pool)?)?;
        let mut x = x.flatten_from(1)?;
        for (name, op) in &self.classifier {
            let y = op.run(&x, tap)?;
            x = tap.at(name, y)?;
        }
        Ok(x)
    }
}

// ---------------------------------------------------------------------------------------
// Adaptive average pooling
// ---------------------------------------------------------------------------------------

/// The `(input, output)` matrix that averages the bins of PyTorch's adaptive pooling along
/// one dimension: output `i` is the mean of inputs `⌊i·n/m⌋ .. ⌈(i+1)·n/m⌉`.
fn bin_matrix(n: usize, m: usize, x: &Tensor) -> candle_core::Result<Tensor> {
    let mut a = vec![0f64; n * m];
    for i in 0..m {
        let start = i * n / m;
        let end = ((i + 1) * n).div_ceil(m);
        for j in start..end {
            a[j * m + i] = 1.0 / (end - start) as f64;
        }
    }
    Tensor::from_vec(a, (n, m), &Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())
}

/// PyTorch's `adaptive_avg_pool2d(x, (oh, ow))` on an `(N, C, H, W)` tensor. The bins of a
/// rectangle are the products of the bins of each dimension, so it is two matrix products
/// (and differentiable as such). When the input already has the target size, it is returned
/// as it is.
pub fn adaptive_avg_pool2d(x: &Tensor, (oh, ow): (usize, usize)) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if (h, w) == (oh, ow) {
        return Ok(x.clone());
    }
    // Along W: (N·C·H, W) × (W, OW).
    let y = x.reshape((n * c * h, w))?.matmul(&bin_matrix(w, ow, x)?)?;
    // Along H: (N·C·OW, H) × (H, OH).
    let y = y.reshape((n * c, h, ow))?.transpose(1, 2)?.contiguous()?;
    let y = y.reshape((n * c * ow, h))?.matmul(&bin_matrix(h, oh, x)?)?;
    y.reshape((n, c, ow, oh))?.transpose(2, 3)?.contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct implementation of PyTorch's loops.
    fn reference(x: &[f64], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..oh {
            let (h0, h1) = (i * h / oh, ((i + 1) * h).div_ceil(oh));
            for j in 0..ow {
                let (w0, w1) = (j * w / ow, ((j + 1) * w).div_ceil(ow));
                let mut s = 0.0;
                for y in h0..h1 {
                    for xx in w0..w1 {
                        s += x[y * w + xx];
                    }
                }
                out.push(s / ((h1 - h0) * (w1 - w0)) as f64);
            }
        }
        out
    }

    #[test]
    fn adaptive_pooling_matches_pytorch_bins() {
        for (h, w, oh, ow) in [(13, 13, 6, 6), (2, 3, 7, 7), (14, 10, 7, 7), (1, 1, 7, 7), (5, 9, 3, 4)] {
            let x = Tensor::randn(0f64, 1.0, (2, 3, h, w), &Device::Cpu).unwrap();
            let y = adaptive_avg_pool2d(&x, (oh, ow)).unwrap();
            assert_eq!(y.dims(), &[2, 3, oh, ow]);
            for p in 0..6 {
                let plane = x.get(p / 3).unwrap().get(p % 3).unwrap();
                let plane = plane.flatten_all().unwrap().to_vec1::<f64>().unwrap();
                let want = reference(&plane, (h, w), (oh, ow));
                let got = y.get(p / 3).unwrap().get(p % 3).unwrap().flatten_all().unwrap();
                for (a, b) in got.to_vec1::<f64>().unwrap().iter().zip(&want) {
                    assert!((a - b).abs() < 1e-12, "{h}×{w} → {oh}×{ow}: {a} vs {b}");
                }
            }
        }
        let x = Tensor::randn(0f32, 1.0, (1, 2, 7, 7), &Device::Cpu).unwrap();
        let y = adaptive_avg_pool2d(&x, (7, 7)).unwrap();
        assert_eq!(
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }
}
