//! The plain sequential network that VGG and AlexNet share ([`Plain`], described by a
//! [`PlainSpec`]): `features` → `avgpool` → flatten → `classifier`, every module a named
//! layer; and PyTorch's adaptive average pooling ([`adaptive_avg_pool2d`]).

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::ops::bias::Act;

use super::layer::{linear_tensors, Net, Tensors};
use super::nn::{linear, out_size, BatchNorm, Conv, ConvConfig, Linear, Pad};
use super::{InputSpec, LayerInfo, LayerKind, Model, Tap};
use crate::ops::max_pool2d;

/// torchvision's batch norm ε.
const EPS: f64 = 1e-5;

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

impl Spec {
    /// `nn.Conv2d`'s configuration: bias, symmetric padding.
    fn conv_config(stride: usize, pad: usize) -> ConvConfig {
        ConvConfig {
            stride,
            pad: Pad::Sym(pad),
            ..Default::default()
        }
    }

    /// The module's tensors when it is named `name`.
    fn tensors(&self, name: &str) -> Tensors {
        match *self {
            Spec::Conv {
                cin,
                cout,
                k,
                stride,
                pad,
            } => Conv::tensors(name, cin, cout, k, Spec::conv_config(stride, pad)),
            Spec::Norm(c) => BatchNorm::tensors(name, c),
            Spec::Linear { cin, cout } => linear_tensors(name, cin, cout),
            Spec::Relu | Spec::MaxPool { .. } => Vec::new(),
        }
    }
}

impl PlainSpec {
    /// The named layers with their output shapes for `input`, and the state dict's
    /// tensors in torchvision's order.
    pub fn net(&self, input: &InputSpec) -> Net {
        let (mut c, mut h, mut w) = (input.channels, input.height, input.width);
        let mut net = Net::default();
        for (i, s) in &self.features {
            let name = format!("features.{i}");
            let kind = match *s {
                Spec::Conv {
                    cout, k, stride, pad, ..
                } => {
                    (c, h, w) = (cout, out_size(h, k, stride, pad), out_size(w, k, stride, pad));
                    LayerKind::Conv
                }
                Spec::Norm(_) => LayerKind::BatchNorm,
                Spec::Relu => LayerKind::Relu,
                Spec::MaxPool { k, stride, pad } => {
                    (h, w) = (out_size(h, k, stride, pad), out_size(w, k, stride, pad));
                    LayerKind::MaxPool
                }
                Spec::Linear { .. } => unreachable!("no linear layer in features"),
            };
            let tensors = s.tensors(&name);
            net.owning(LayerInfo::new(name, kind, vec![c, h, w]), tensors);
        }
        let (ph, pw) = self.pool;
        net.layer(LayerInfo::new("avgpool", LayerKind::AvgPool, vec![c, ph, pw]));
        let mut n = c * ph * pw;
        for (i, s) in &self.classifier {
            let name = format!("classifier.{i}");
            let kind = match *s {
                Spec::Linear { cout, .. } => {
                    n = cout;
                    LayerKind::Linear
                }
                Spec::Relu => LayerKind::Relu,
                _ => unreachable!("only linear and ReLU layers in the classifier"),
            };
            let tensors = s.tensors(&name);
            net.owning(LayerInfo::new(name, kind, vec![n]), tensors);
        }
        net
    }
}

enum Op {
    /// A convolution, with the batch norm after it folded in when there is one (for
    /// passes where neither's own output is wanted).
    Conv(Conv, Option<Conv>),
    Norm(BatchNorm),
    Relu,
    MaxPool {
        k: usize,
        stride: usize,
        pad: usize,
    },
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
            } => Op::Conv(Conv::new(cin, cout, k, Spec::conv_config(stride, pad), vb)?, None),
            Spec::Norm(c) => Op::Norm(BatchNorm::new(c, EPS, vb)?),
            Spec::Relu => Op::Relu,
            Spec::MaxPool { k, stride, pad } => Op::MaxPool { k, stride, pad },
            Spec::Linear { cin, cout } => Op::Linear(linear(cin, cout, vb)?),
        })
    }

    fn run(&self, x: &Tensor, tap: &Tap) -> candle_core::Result<Tensor> {
        match self {
            Op::Conv(c, _) => c.forward(x),
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
        let layers = spec.net(input).layers;
        let ops = |list: &[(usize, Spec)], group: &str| -> candle_core::Result<Vec<(String, Op)>> {
            list.iter()
                .map(|(i, s)| {
                    let name = format!("{group}.{i}");
                    Ok((name.clone(), Op::new(vb.pp(&name), *s)?))
                })
                .collect()
        };
        let mut features = ops(&spec.features, "features")?;
        for i in 1..features.len() {
            let (before, after) = features.split_at_mut(i);
            if let ((_, Op::Conv(c, folded)), (_, Op::Norm(bn))) = (&mut before[i - 1], &after[0]) {
                *folded = Some(c.clone().fold(bn)?);
            }
        }
        Ok(Plain {
            id: spec.id,
            features,
            pool: spec.pool,
            classifier: ops(&spec.classifier, "classifier")?,
            layers,
            classes,
        })
    }
}

impl Plain {
    /// A convolution (and its batch norm) and the ReLU after it as one op, when the tap
    /// touches none of them but the ReLU: the output and the index of the op after them.
    fn fused(&self, i: usize, x: &Tensor, tap: &Tap) -> candle_core::Result<Option<(Tensor, usize)>> {
        let f = &self.features;
        let Some((conv_name, Op::Conv(conv, folded))) = f.get(i) else {
            return Ok(None);
        };
        let (conv, relu) = match (f.get(i + 1), f.get(i + 2)) {
            (Some((_, Op::Relu)), _) => (conv, i + 1),
            (Some((bn_name, Op::Norm(_))), Some((_, Op::Relu))) if !tap.touches(bn_name) => match folded {
                Some(c) => (c, i + 2),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        if tap.touches(conv_name) || conv.bias().is_none() {
            return Ok(None);
        }
        Ok(Some((conv.forward_with(x, Act::relu(tap.guided))?, relu + 1)))
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
        let mut i = 0;
        while i < self.features.len() {
            if let Some((y, next)) = self.fused(i, &x, tap)? {
                // The layers fused away are not touched: only the last one's output is named.
                x = tap.at(&self.features[next - 1].0, y)?;
                i = next;
                continue;
            }
            let (name, op) = &self.features[i];
            let y = op.run(&x, tap)?;
            x = tap.at(name, y)?;
            i += 1;
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
