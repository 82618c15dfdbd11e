//! Building blocks shared by the architectures, each a thin layer over candle with the
//! behaviour PyTorch has (layouts, padding, inference-mode batch norm).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::layer::Tensors;
use crate::ops::bias::Act;
use crate::ops::depthwise_conv2d;

/// Padding of a convolution.
#[derive(Debug, Clone, Copy)]
pub enum Pad {
    /// The same on every side (PyTorch's `padding=p`).
    Sym(usize),
    /// TensorFlow's "SAME": `max((⌈i/s⌉ − 1)·s + k − i, 0)` in all, half (rounded down)
    /// before and the rest after, computed from the input size at run time.
    Same,
    /// `[top, bottom, left, right]` (ONNX's `pads`).
    Explicit([usize; 4]),
}

/// TensorFlow's SAME padding for one dimension: (before, after).
pub fn same_pad(i: usize, k: usize, s: usize) -> (usize, usize) {
    let total = ((i.div_ceil(s) - 1) * s + k).saturating_sub(i);
    (total / 2, total - total / 2)
}

/// How a [`Conv`] is configured, apart from its widths and kernel size. The default is
/// PyTorch's `nn.Conv2d`: stride 1, no padding, one group, with bias.
#[derive(Debug, Clone, Copy)]
pub struct ConvConfig {
    pub stride: usize,
    pub pad: Pad,
    pub groups: usize,
    pub bias: bool,
}

impl Default for ConvConfig {
    fn default() -> Self {
        ConvConfig {
            stride: 1,
            pad: Pad::Sym(0),
            groups: 1,
            bias: true,
        }
    }
}

impl ConvConfig {
    /// The tensors of a `cin → cout`, `k × k` convolution, by their names in the module.
    /// [`Conv::new`] asks for these and [`Conv::tensors`] lists them, so the two agree.
    fn shapes(&self, cin: usize, cout: usize, k: usize) -> Vec<(&'static str, Vec<usize>)> {
        let mut v = vec![("weight", vec![cout, cin / self.groups, k, k])];
        if self.bias {
            v.push(("bias", vec![cout]));
        }
        v
    }
}

/// A 2-D convolution in PyTorch's layout (`out, in/groups, kh, kw`).
#[derive(Clone)]
pub struct Conv {
    weight: Tensor,
    /// The weight transformed for Winograd's algorithm (3×3, stride 1, one group, wide).
    winograd: Option<std::sync::Arc<crate::ops::winograd::Kernel>>,
    bias: Option<Tensor>,
    stride: usize,
    pad: Pad,
    groups: usize,
    k: usize,
}

impl Conv {
    /// A `cin → cout`, `k × k` convolution with the weights `vb` holds (as `candle_nn::conv2d`).
    pub fn new(cin: usize, cout: usize, k: usize, cfg: ConvConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let mut loaded: Vec<Tensor> = cfg
            .shapes(cin, cout, k)
            .into_iter()
            .map(|(name, shape)| vb.get(shape, name))
            .collect::<candle_core::Result<_>>()?;
        // `shapes` lists the weight, then the bias if there is one.
        let bias = cfg.bias.then(|| loaded.pop()).flatten();
        let weight = loaded.remove(0);
        Conv::from_tensors(weight, bias, k, cfg)
    }

    /// A `k × k` convolution from its weight `(out, in/groups, k, k)` and bias (ONNX graphs).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, k: usize, cfg: ConvConfig) -> candle_core::Result<Self> {
        Conv {
            weight,
            winograd: None,
            bias,
            stride: cfg.stride,
            pad: cfg.pad,
            groups: cfg.groups,
            k,
        }
        .prepared()
    }

    /// With the weight transformed for Winograd's algorithm where it applies.
    fn prepared(mut self) -> candle_core::Result<Conv> {
        let (o, c) = (self.weight.dim(0)?, self.weight.dim(1)?);
        self.winograd = if self.k == 3
            && self.stride == 1
            && self.groups == 1
            && crate::ops::winograd::wide(c, o)
            && !self.weight.track_op()
        {
            crate::ops::winograd::Kernel::new(&self.weight)?.map(std::sync::Arc::new)
        } else {
            None
        };
        Ok(self)
    }

    /// The tensors a convolution named `prefix` holds in a state dict.
    pub fn tensors(prefix: &str, cin: usize, cout: usize, k: usize, cfg: ConvConfig) -> Tensors {
        cfg.shapes(cin, cout, k)
            .into_iter()
            .map(|(n, s)| (format!("{prefix}.{n}"), s))
            .collect()
    }

    /// This convolution followed by an inference batch norm, as one convolution:
    /// `bn(conv(x)) = conv'(x)` with weight `w·s` and bias `b·s + t` (`s`, `t` the batch
    /// norm's per-channel scale and shift). Only for batch norms that are not named layers:
    /// the pre-norm output is no longer computed.
    pub fn fold(mut self, bn: &BatchNorm) -> candle_core::Result<Conv> {
        let c = self.weight.dim(0)?;
        let scale = bn.scale.reshape(c)?;
        let shift = bn.shift.reshape(c)?;
        self.weight = self.weight.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        self.bias = Some(match self.bias.take() {
            Some(b) => ((b * &scale)? + shift)?,
            None => shift,
        });
        self.prepared()
    }

    fn pads(&self, i: usize) -> (usize, usize) {
        match self.pad {
            Pad::Sym(p) => (p, p),
            Pad::Same => same_pad(i, self.k, self.stride),
            Pad::Explicit(_) => unreachable!("explicit padding is read whole"),
        }
    }

    /// The padding for an `h × w` input: `[top, bottom, left, right]`.
    pub fn padding(&self, h: usize, w: usize) -> [usize; 4] {
        if let Pad::Explicit(p) = self.pad {
            return p;
        }
        let ((t, b), (l, r)) = (self.pads(h), self.pads(w));
        [t, b, l, r]
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The weight transformed for Winograd's algorithm, where it applies.
    pub fn winograd(&self) -> Option<&std::sync::Arc<crate::ops::winograd::Kernel>> {
        self.winograd.as_ref()
    }

    pub fn kernel(&self) -> usize {
        self.k
    }

    pub fn stride(&self) -> usize {
        self.stride
    }

    /// This convolution with the given padding instead of its own, then its bias and `act`
    /// (not guided). Used to compute part of an output map from a part of the input map
    /// (`models::region`), where the padding is already in the input.
    pub fn forward_padded(&self, x: &Tensor, pads: [usize; 4], act: Act) -> candle_core::Result<Tensor> {
        match &self.bias {
            Some(b) if fast_dtype(x) => self.forward_act(x, b, act, pads),
            _ => {
                let y = self.convolve(x, pads)?;
                let y = match &self.bias {
                    Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?,
                    None => y,
                };
                activate(&y, act)
            }
        }
    }

    /// This convolution with its own padding, then its bias and `act` (guided if `act` is),
    /// as one op where our kernels apply.
    pub fn forward_with(&self, x: &Tensor, act: Act) -> candle_core::Result<Tensor> {
        match &self.bias {
            Some(b) if fast_dtype(x) => self.forward_act(x, b, act, self.own_padding(x)?),
            _ => activate(&Module::forward(self, x)?, act),
        }
    }
}

/// `act(y)` with candle's ops, for the dtypes our kernels do not take.
fn activate(y: &Tensor, act: Act) -> candle_core::Result<Tensor> {
    let r = match act {
        Act::Identity => return Ok(y.clone()),
        Act::Relu | Act::GuidedRelu => y.relu()?,
        Act::Relu6 | Act::GuidedRelu6 => relu6(y)?,
    };
    if matches!(act, Act::GuidedRelu | Act::GuidedRelu6) {
        crate::ops::guided(&r)
    } else {
        Ok(r)
    }
}

impl Conv {
    /// This convolution followed by the network's ReLU6 (guided when the tap says so), with
    /// the bias and the activation as one op where our kernels apply.
    pub fn forward_relu6(&self, x: &Tensor, tap: &super::Tap) -> candle_core::Result<Tensor> {
        let act = if tap.guided { Act::GuidedRelu6 } else { Act::Relu6 };
        match &self.bias {
            Some(b) if fast_dtype(x) => self.forward_act(x, b, act, self.own_padding(x)?),
            _ => tap.relu6(&self.forward(x)?),
        }
    }

    /// Convolution, bias and activation, fused as far as our kernels go: one op, except
    /// for grouped convolutions that are not depthwise, which take the bias and activation
    /// in a second.
    fn forward_act(&self, x: &Tensor, b: &Tensor, act: Act, pads: [usize; 4]) -> candle_core::Result<Tensor> {
        let c = x.dim(1)?;
        if self.k == 1 && self.groups == 1 && self.stride == 1 && pads == [0; 4] {
            let o = self.weight.dim(0)?;
            crate::ops::pointwise::conv1x1_bias_act(x, &self.weight.reshape((o, c))?, b, act)
        } else if self.is_depthwise(c)? {
            crate::ops::depthwise::depthwise_conv2d_bias_act(x, &self.weight, b, self.stride, pads, act)
        } else if self.groups == 1 {
            crate::ops::conv2d_bias_act(x, &self.weight, b, self.stride, pads, act, self.winograd.as_ref())
        } else {
            crate::ops::bias::bias_act(&self.convolve(x, pads)?, b, act)
        }
    }

    /// One filter per input channel, one output per filter.
    fn is_depthwise(&self, c: usize) -> candle_core::Result<bool> {
        Ok(self.groups > 1 && self.groups == c && self.weight.dim(0)? == c)
    }

    fn own_padding(&self, x: &Tensor) -> candle_core::Result<[usize; 4]> {
        let (_, _, h, w) = x.dims4()?;
        Ok(self.padding(h, w))
    }

    /// The convolution without its bias, with padding `[top, bottom, left, right]`.
    fn convolve(&self, x: &Tensor, [pt, pb, pl, pr]: [usize; 4]) -> candle_core::Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        let y = if self.is_depthwise(c)? {
            depthwise_conv2d(x, &self.weight, self.stride, [pt, pb, pl, pr])?
        } else if self.k == 1 && self.groups == 1 && pt + pb + pl + pr == 0 {
            // A 1×1 convolution is a matrix product over channels; as such, forward and
            // backward run on the fast GEMM instead of candle's im2col and transposed conv.
            let x = if self.stride > 1 {
                let rows = Tensor::arange_step(0u32, h as u32, self.stride as u32, x.device())?;
                let cols = Tensor::arange_step(0u32, w as u32, self.stride as u32, x.device())?;
                x.index_select(&rows, 2)?.index_select(&cols, 3)?
            } else {
                x.clone()
            };
            let (n, _, oh, ow) = x.dims4()?;
            let o = self.weight.dim(0)?;
            let w2 = self.weight.reshape((o, c))?;
            if fast_dtype(&x) {
                crate::ops::conv1x1(&x, &w2)?
            } else {
                w2.broadcast_matmul(&x.reshape((n, c, oh * ow))?)?
                    .reshape((n, o, oh, ow))?
            }
        } else if self.groups == 1 && fast_dtype(x) {
            crate::ops::conv2d(x, &self.weight, self.stride, [pt, pb, pl, pr])?
        } else {
            let x = if pt + pb + pl + pr > 0 {
                x.pad_with_zeros(2, pt, pb)?.pad_with_zeros(3, pl, pr)?
            } else {
                x.clone()
            };
            // candle's conv backward fails when the stride leaves trailing rows or columns
            // unused; they do not affect the output, so they are cropped (gradient 0 there).
            let (ph, pw) = (x.dim(2)?, x.dim(3)?);
            let (uh, uw) = (
                (ph - self.k) / self.stride * self.stride + self.k,
                (pw - self.k) / self.stride * self.stride + self.k,
            );
            let x = if (uh, uw) != (ph, pw) {
                x.narrow(2, 0, uh)?.narrow(3, 0, uw)?
            } else {
                x
            };
            x.conv2d(&self.weight, 0, self.stride, 1, self.groups)?
        };
        Ok(y)
    }
}

impl Module for Conv {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let pads = self.own_padding(x)?;
        if let Some(b) = self.bias.as_ref().filter(|_| fast_dtype(x)) {
            return self.forward_act(x, b, Act::Identity, pads);
        }
        let y = self.convolve(x, pads)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
            None => Ok(y),
        }
    }
}

/// A fully connected layer as PyTorch's `nn.Linear`: weight `(out, in)`, bias `(out)`.
/// Unlike `candle_nn::Linear`, its backward computes the weight's gradient only when the
/// weight takes part in the gradient graph (`ops::linear`).
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

/// An `cin → cout` fully connected layer with the weights `vb` holds (as `candle_nn::linear`).
pub fn linear(cin: usize, cout: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    Ok(Linear {
        weight: vb.get((cout, cin), "weight")?,
        bias: vb.get(cout, "bias")?,
    })
}

impl Linear {
    /// From a weight `(out, in)` and a bias `(out)`.
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Linear {
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if fast_dtype(x) && x.rank() == 2 && x.dtype() == self.weight.dtype() {
            return crate::ops::linear::linear(x, &self.weight, &self.bias);
        }
        x.broadcast_matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

/// Batch norm in inference form: `(x − running_mean)/√(running_var + ε) · weight + bias`,
/// folded at load time into one scale and one shift per channel.
pub struct BatchNorm {
    scale: Tensor,
    shift: Tensor,
}

/// A batch norm's tensors, by their names in the module, in state-dict order.
const BATCH_NORM: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

impl BatchNorm {
    /// A batch norm over `c` channels with the statistics `vb` holds.
    pub fn new(c: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let [w, b, mean, var] = BATCH_NORM.map(|n| vb.get(c, n));
        let (w, b, mean, var) = (w?, b?, mean?, var?);
        let scale = (w / (var + eps)?.sqrt()?)?;
        let shift = (b - (mean * &scale)?)?;
        Ok(BatchNorm {
            scale: scale.reshape((1, c, 1, 1))?,
            shift: shift.reshape((1, c, 1, 1))?,
        })
    }

    /// From its four tensors (ONNX's `BatchNormalization` inputs).
    pub fn from_tensors(w: Tensor, b: Tensor, mean: Tensor, var: Tensor, eps: f64) -> candle_core::Result<Self> {
        let c = w.elem_count();
        let scale = (w.reshape(c)? / (var.reshape(c)? + eps)?.sqrt()?)?;
        let shift = (b.reshape(c)? - (mean.reshape(c)? * &scale)?)?;
        Ok(BatchNorm {
            scale: scale.reshape((1, c, 1, 1))?,
            shift: shift.reshape((1, c, 1, 1))?,
        })
    }

    /// The tensors a batch norm named `prefix` holds in a state dict (its running
    /// statistics are not parameters: [`super::layer::is_parameter`]).
    pub fn tensors(prefix: &str, c: usize) -> Tensors {
        BATCH_NORM.iter().map(|n| (format!("{prefix}.{n}"), vec![c])).collect()
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if fast_dtype(x) && x.rank() == 4 && self.scale.dtype() == x.dtype() {
            let c = self.scale.elem_count();
            return crate::ops::affine::channel_affine(x, &self.scale.reshape(c)?, &self.shift.reshape(c)?);
        }
        x.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
    }
}

/// `min(max(x, 0), 6)`; its gradient is 1 strictly inside (0, 6), as PyTorch's.
pub fn relu6(x: &Tensor) -> candle_core::Result<Tensor> {
    if fast_dtype(x) {
        crate::ops::relu6(x)
    } else {
        x.clamp(0f32, 6f32)
    }
}

/// Whether our own CPU ops handle this tensor (f32 and f64; other dtypes take candle's).
pub(crate) fn fast_dtype(x: &Tensor) -> bool {
    matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64) && x.device().is_cpu()
}

/// Output size of a convolution or max-pool along one dimension (PyTorch, floor mode).
/// Callers check the input size beforehand; a too small one gives 1, not an overflow.
pub fn out_size(i: usize, k: usize, stride: usize, pad: usize) -> usize {
    (i + 2 * pad).saturating_sub(k) / stride + 1
}

/// Mean over the spatial dimensions: `(N, C, H, W)` → `(N, C)`.
pub fn global_avg_pool(x: &Tensor) -> candle_core::Result<Tensor> {
    x.mean((2, 3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use std::collections::HashMap;

    /// Every path of `Conv` (1×1 as a matrix product, strided 1×1, depthwise, general)
    /// against candle's own convolution, forward and input gradient.
    #[test]
    fn conv_paths_match_candle() {
        let dev = Device::Cpu;
        for (cin, cout, k, stride, pad, groups) in [
            (6, 5, 1, 1, 0, 1),
            (6, 5, 1, 2, 0, 1),
            (4, 4, 3, 2, 1, 4),
            (3, 8, 3, 1, 1, 1),
            (4, 6, 3, 2, 1, 2),
        ] {
            let w = Tensor::randn(0f64, 1.0, (cout, cin / groups, k, k), &dev).unwrap();
            let b = Tensor::randn(0f64, 1.0, cout, &dev).unwrap();
            let map: HashMap<String, Tensor> =
                [("weight".to_string(), w.clone()), ("bias".to_string(), b.clone())].into();
            let vb = VarBuilder::from_tensors(map, DType::F64, &dev);
            let cfg = ConvConfig {
                stride,
                pad: Pad::Sym(pad),
                groups,
                ..Default::default()
            };
            let conv = Conv::new(cin, cout, k, cfg, vb).unwrap();
            let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, cin, 9, 9), &dev).unwrap()).unwrap();
            let ours = conv.forward(&x).unwrap();
            // 9 + 2p − k is even for these cases, so candle's backward works on them.
            let theirs = x
                .conv2d(&w, pad, stride, 1, groups)
                .unwrap()
                .broadcast_add(&b.reshape((1, cout, 1, 1)).unwrap())
                .unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let d = (&ours - &theirs)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert!(d.to_scalar::<f64>().unwrap() < 1e-10);
            let r = Tensor::randn(0f64, 1.0, ours.shape(), &dev).unwrap();
            let go = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let d = (go.get(&x).unwrap() - gt.get(&x).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            assert!(
                d.to_scalar::<f64>().unwrap() < 1e-9,
                "input gradient, k{k} s{stride} g{groups}"
            );
        }
    }

    #[test]
    fn tf_same_padding() {
        assert_eq!(same_pad(224, 3, 2), (0, 1));
        assert_eq!(same_pad(112, 3, 1), (1, 1));
        assert_eq!(same_pad(56, 5, 2), (1, 2));
        assert_eq!(same_pad(14, 5, 1), (2, 2));
    }
}
