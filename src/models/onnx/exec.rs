//! The ops an ONNX graph runs, on the crate's own kernels where they exist (convolutions
//! of every kind with bias and activation, batch norm, max-pool, linear, ReLU and ReLU6),
//! so ONNX models get the same speed and the same gradients as the built-in ones.

use candle_core::{DType, Device, Tensor};

use super::graph::Param;
use crate::models::nn::{BatchNorm, Conv, ConvConfig, Linear, Pad};
use crate::models::{LayerKind, Tap};
use crate::ops::bias::Act;

/// A node's operation, with its attributes checked (see `graph::Builder::lower`).
#[derive(Debug, Clone)]
pub enum Op {
    Conv {
        k: usize,
        stride: usize,
        /// `[top, bottom, left, right]`.
        pads: [usize; 4],
        groups: usize,
    },
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Binary(String),
    Relu,
    Clip {
        lo: f32,
        hi: f32,
    },
    Sigmoid,
    Sqrt,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    HardSwish,
    BatchNorm {
        eps: f32,
    },
    MaxPool {
        k: usize,
        stride: usize,
        pad: usize,
        ceil: bool,
    },
    AvgPool {
        k: usize,
        stride: usize,
        pads: [usize; 4],
        count_pad: bool,
    },
    Mean {
        axes: Vec<usize>,
        keep: bool,
    },
    Concat {
        axis: usize,
        inputs: usize,
    },
    /// To `[N, shape...]`.
    Reshape {
        shape: Vec<usize>,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// (before, after) per dimension.
    Pad {
        pads: Vec<(usize, usize)>,
    },
    Identity,
    Split {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// (axis, start, length).
    Slice {
        ranges: Vec<(usize, usize, usize)>,
    },
}

/// What a node input is to its op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Role {
    /// A feature map (or a constant operand).
    Map,
    /// A weight. (Inputs past the listed ones — shapes, axes, bounds — were read when the
    /// graph was loaded.)
    Param,
}

impl Op {
    /// The roles of the node's inputs, in order.
    pub fn roles(&self) -> Vec<Role> {
        use Role::*;
        match self {
            Op::Conv { .. } => vec![Map, Param, Param],
            Op::Gemm { .. } => vec![Map, Param, Param],
            Op::MatMul => vec![Map, Param],
            Op::Binary(_) => vec![Map, Map],
            Op::BatchNorm { .. } => vec![Map, Param, Param, Param, Param],
            Op::Concat { inputs, .. } => vec![Map; *inputs],
            _ => vec![Map],
        }
    }

    pub fn kind(&self) -> LayerKind {
        match self {
            Op::Conv { .. } => LayerKind::Conv,
            Op::Gemm { .. } | Op::MatMul => LayerKind::Linear,
            Op::BatchNorm { .. } => LayerKind::BatchNorm,
            Op::Relu => LayerKind::Relu,
            Op::Clip { lo, hi } if *lo == 0.0 && *hi == 6.0 => LayerKind::Relu6,
            Op::Clip { lo, hi } if *lo == 0.0 && *hi == f32::MAX => LayerKind::Relu,
            Op::MaxPool { .. } => LayerKind::MaxPool,
            Op::AvgPool { .. } | Op::Mean { .. } => LayerKind::AvgPool,
            _ => LayerKind::Op,
        }
    }

    /// The activation this op is, for fusing it into the convolution or addition before it.
    pub fn act(&self, guided: bool) -> Option<Act> {
        match self {
            Op::Relu => Some(Act::relu(guided)),
            Op::Clip { lo, hi } if *lo == 0.0 && *hi == 6.0 => Some(Act::relu6(guided)),
            Op::Clip { lo, hi } if *lo == 0.0 && *hi == f32::MAX => Some(Act::relu(guided)),
            _ => None,
        }
    }
}

/// An op ready to run: its weights loaded and prepared.
pub enum Exec {
    Conv(Conv),
    Linear(Linear),
    BatchNorm(BatchNorm),
    Other(Op),
}

fn get(params: &[Option<Param>], i: usize, w: &dyn Fn(&Param) -> Tensor) -> Option<Tensor> {
    params.get(i).and_then(|p| p.as_ref()).map(w)
}

impl Exec {
    /// Loads the op's weights through `w` (from the file or a `VarBuilder`).
    pub fn new(op: &Op, params: &[Option<Param>], w: impl Fn(&Param) -> Tensor) -> candle_core::Result<Exec> {
        let need = |i: usize, what: &str| {
            get(params, i, &w)
                .ok_or_else(|| candle_core::Error::Msg(format!("the {what} (input {}) is missing", i + 1)))
        };
        Ok(match op {
            Op::Conv {
                k,
                stride,
                pads,
                groups,
            } => {
                let weight = need(0, "weight")?;
                let o = weight.dim(0)?;
                if o % groups != 0 {
                    candle_core::bail!("{o} filters do not split into {groups} groups");
                }
                // Without a bias, a zero one: the fused kernels take one.
                let bias = match get(params, 1, &w) {
                    Some(b) => b.reshape(o)?,
                    None => Tensor::zeros(o, weight.dtype(), weight.device())?,
                };
                let cfg = ConvConfig {
                    stride: *stride,
                    pad: Pad::Explicit(*pads),
                    groups: *groups,
                    bias: true,
                };
                Exec::Conv(Conv::from_tensors(weight, Some(bias), *k, cfg)?)
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                if *trans_a {
                    candle_core::bail!("`transA` on a feature map is not supported");
                }
                let b = need(0, "weight")?;
                let wt = if *trans_b { b } else { b.t()?.contiguous()? };
                let wt = if *alpha != 1.0 { (wt * *alpha as f64)? } else { wt };
                let out = wt.dim(0)?;
                let bias = match get(params, 1, &w) {
                    Some(c) if c.elem_count() == out => (c.reshape(out)? * *beta as f64)?,
                    Some(c) if c.elem_count() == 1 => (c.reshape(())?.broadcast_as(out)?.contiguous()? * *beta as f64)?,
                    Some(c) => candle_core::bail!("the bias {:?} is not one value per output ({out})", c.dims()),
                    None => Tensor::zeros(out, wt.dtype(), wt.device())?,
                };
                Exec::Linear(Linear::from_tensors(wt, bias))
            }
            Op::MatMul => {
                let b = need(0, "weight")?;
                if b.rank() != 2 {
                    candle_core::bail!("the second factor {:?} must be a matrix", b.dims());
                }
                let wt = b.t()?.contiguous()?;
                let out = wt.dim(0)?;
                Exec::Linear(Linear::from_tensors(
                    wt.clone(),
                    Tensor::zeros(out, wt.dtype(), wt.device())?,
                ))
            }
            Op::BatchNorm { eps } => {
                let [s, b, m, v] = [0, 1, 2, 3].map(|i| need(i, ["scale", "bias", "mean", "variance"][i]));
                Exec::BatchNorm(BatchNorm::from_tensors(s?, b?, m?, v?, *eps as f64)?)
            }
            op => Exec::Other(op.clone()),
        })
    }

    /// The op on its inputs; `act` applies an activation fused into a convolution or an
    /// addition (see `OnnxModel::forward`).
    pub fn run(&self, ins: &[Tensor], tap: &mut Tap) -> candle_core::Result<Vec<Tensor>> {
        self.run_act(ins, tap, None)
    }

    pub fn run_act(&self, ins: &[Tensor], tap: &mut Tap, act: Option<Act>) -> candle_core::Result<Vec<Tensor>> {
        let x = &ins[0];
        let one = |t: Tensor| Ok(vec![t]);
        match self {
            Exec::Conv(c) => {
                if x.rank() != 4 {
                    candle_core::bail!("a convolution needs an (N, C, H, W) input, not {:?}", x.dims());
                }
                one(c.forward_with(x, act.unwrap_or(Act::Identity))?)
            }
            Exec::Linear(l) => {
                if x.rank() != 2 {
                    candle_core::bail!(
                        "a fully connected layer needs an (N, features) input, not {:?}",
                        x.dims()
                    );
                }
                one(candle_core::Module::forward(l, x)?)
            }
            Exec::BatchNorm(bn) => {
                let y = if x.rank() == 4 {
                    candle_core::Module::forward(bn, x)?
                } else {
                    let dims = x.dims().to_vec();
                    let (n, c) = (dims[0], dims[1]);
                    let rest: usize = dims[2..].iter().product();
                    candle_core::Module::forward(bn, &x.reshape((n, c, rest, 1))?)?.reshape(dims)?
                };
                one(y)
            }
            Exec::Other(op) => run_op(op, ins, tap, act),
        }
    }
}

fn run_op(op: &Op, ins: &[Tensor], tap: &mut Tap, act: Option<Act>) -> candle_core::Result<Vec<Tensor>> {
    let x = &ins[0];
    let y = match op {
        Op::Binary(kind) => {
            let b = &ins[1];
            let b = if b.dtype() != x.dtype() {
                b.to_dtype(x.dtype())?
            } else {
                b.clone()
            };
            if kind == "Add" && act.is_some() && x.dims() == b.dims() {
                return Ok(vec![tap.add_relu(x, &b)?]);
            }
            let same = x.dims() == b.dims();
            match (kind.as_str(), same) {
                ("Add", true) => (x + &b)?,
                ("Sub", true) => (x - &b)?,
                ("Mul", true) => (x * &b)?,
                ("Div", true) => (x / &b)?,
                ("Add", false) => x.broadcast_add(&b)?,
                ("Sub", false) => x.broadcast_sub(&b)?,
                ("Mul", false) => x.broadcast_mul(&b)?,
                _ => x.broadcast_div(&b)?,
            }
        }
        Op::Relu => tap.relu(x)?,
        Op::Clip { lo, hi } => match op.act(false) {
            Some(Act::Relu6) => tap.relu6(x)?,
            Some(_) => tap.relu(x)?,
            None => {
                let y = x.clamp(*lo, *hi)?;
                if tap.guided {
                    crate::ops::guided(&y)?
                } else {
                    y
                }
            }
        },
        Op::Sigmoid => candle_nn::ops::sigmoid(x)?,
        Op::Sqrt => x.sqrt()?,
        Op::HardSigmoid { alpha, beta } => ((x * *alpha as f64)? + *beta as f64)?.clamp(0f32, 1f32)?,
        Op::HardSwish => (x * ((x * (1.0 / 6.0))? + 0.5)?.clamp(0f32, 1f32)?)?,
        Op::MaxPool { k, stride, pad, ceil } => {
            if x.rank() != 4 {
                candle_core::bail!("max-pool needs an (N, C, H, W) input, not {:?}", x.dims());
            }
            crate::ops::maxpool::max_pool2d_mode(x, *k, *stride, *pad, *ceil)?
        }
        Op::AvgPool {
            k,
            stride,
            pads,
            count_pad,
        } => avg_pool(x, *k, *stride, *pads, *count_pad)?,
        Op::Mean { axes, keep } => {
            let mut y = x.clone();
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            for &a in sorted.iter().rev() {
                y = if *keep { y.mean_keepdim(a)? } else { y.mean(a)? };
            }
            y
        }
        Op::Concat { axis, .. } => {
            let same: Vec<Tensor> = ins
                .iter()
                .map(|t| {
                    if t.dtype() != x.dtype() {
                        t.to_dtype(x.dtype())
                    } else {
                        Ok(t.clone())
                    }
                })
                .collect::<candle_core::Result<_>>()?;
            Tensor::cat(&same, *axis)?
        }
        Op::Reshape { shape } => {
            let mut s = vec![x.dim(0)?];
            s.extend(shape);
            x.reshape(s)?
        }
        Op::Transpose { perm } => x.permute(perm.as_slice())?.contiguous()?,
        Op::Pad { pads } => {
            let mut y = x.clone();
            for (a, &(b, e)) in pads.iter().enumerate() {
                if b + e > 0 {
                    y = y.pad_with_zeros(a, b, e)?;
                }
            }
            y
        }
        Op::Identity => x.clone(),
        Op::Split { axis, sizes } => {
            let mut out = Vec::new();
            let mut at = 0;
            for &s in sizes {
                out.push(x.narrow(*axis, at, s)?);
                at += s;
            }
            return Ok(out);
        }
        Op::Slice { ranges } => {
            let mut y = x.clone();
            for &(a, s, l) in ranges {
                y = y.narrow(a, s, l)?;
            }
            y
        }
        Op::Conv { .. } | Op::Gemm { .. } | Op::MatMul | Op::BatchNorm { .. } => {
            unreachable!("ops with weights run as their own Exec")
        }
    };
    Ok(vec![y])
}

/// Average pooling as a depthwise convolution with equal weights (linear, so its gradient is
/// exact); without `count_pad`, each output is rescaled to the mean of the inputs it covers.
fn avg_pool(x: &Tensor, k: usize, stride: usize, pads: [usize; 4], count_pad: bool) -> candle_core::Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let weight = Tensor::full(1.0 / (k * k) as f64, (c, 1, k, k), x.device())?.to_dtype(x.dtype())?;
    let y = crate::ops::depthwise_conv2d(&x.contiguous()?, &weight, stride, pads)?;
    if count_pad || pads == [0; 4] {
        return Ok(y);
    }
    let (oh, ow) = (y.dim(2)?, y.dim(3)?);
    let [pt, _, pl, _] = pads;
    let covered = |o: usize, n: usize, p: usize| {
        let lo = (o * stride) as i64 - p as i64;
        let hi = lo + k as i64;
        (hi.min(n as i64) - lo.max(0)).max(1) as f64
    };
    let scale: Vec<f64> = (0..oh)
        .flat_map(|oy| (0..ow).map(move |ox| (k * k) as f64 / (covered(oy, h, pt) * covered(ox, w, pl))))
        .collect();
    let scale = Tensor::from_vec(scale, (1, 1, oh, ow), &Device::Cpu)?.to_dtype(x.dtype())?;
    y.broadcast_mul(&scale)
}

/// Casts constants to the dtype the model computes in.
pub fn cast(t: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    if t.dtype() == dtype {
        Ok(t.clone())
    } else {
        t.to_dtype(dtype)
    }
}
