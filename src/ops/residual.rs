//! A residual block (ResNet's basic or bottleneck block) as one op: the main path's
//! convolutions, each with its folded batch norm and a ReLU between them, the shortcut (the
//! input, or a 1×1 convolution where the shape changes), the addition and the last ReLU.
//!
//! Built from the kernels the separate ops use (`conv2d_bias_act`, `conv1x1_bias_act`,
//! `add_relu`), so the forward pass gives the same bits. The gain is in the backward pass:
//! candle turns each of a block's five or six graph nodes into a zero tensor plus an
//! addition of its gradient, and each ReLU's gradient into a fresh buffer; here the block is
//! one node, the ReLU masks are applied in place, and the shortcut's gradient is where the
//! first 1×1 convolution's product accumulates. The main path's activations are kept for
//! the backward pass only when the block's input takes part in a gradient graph.
//!
//! f32 or f64, without guided ReLUs and with constant weights: models use the separate ops
//! otherwise (guided backpropagation, weight gradients).

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

use super::bias::{act_backward, act_mask, apply_act, epilogue, Act};
use super::conv::{self, Conv2d};
use super::pointwise::{matmul, matmul_batch};
use super::winograd::{Element, Kernel};
use super::with_values;

/// One convolution of a block: weight `(O, C, k, k)` and bias `O` (batch norm folded in).
pub struct Unit {
    weight: Tensor,
    bias: Tensor,
    o: usize,
    c: usize,
    k: usize,
    stride: usize,
    winograd: Option<Arc<Kernel>>,
    /// The weight transposed, `(C·k·k) × O`, made at the first backward pass that needs it:
    /// the input gradient's products read it by rows (the weight itself would be gathered
    /// column by column when gemm packs it, on every call).
    transposed: OnceLock<Tensor>,
}

impl Unit {
    /// `winograd`: the weight transformed for Winograd's algorithm, where it applies.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        winograd: Option<&Arc<Kernel>>,
    ) -> candle_core::Result<Unit> {
        let (o, c, k, kw) = weight.dims4()?;
        if k != kw || bias.elem_count() != o || bias.dtype() != weight.dtype() {
            candle_core::bail!(
                "residual block: weight {:?} and bias {:?} do not fit",
                weight.dims(),
                bias.dims()
            )
        }
        Ok(Unit {
            weight: weight.contiguous()?,
            bias: bias.contiguous()?,
            o,
            c,
            k,
            stride,
            winograd: winograd.cloned(),
            transposed: OnceLock::new(),
        })
    }

    fn transposed(&self) -> candle_core::Result<&Tensor> {
        if let Some(t) = self.transposed.get() {
            return Ok(t);
        }
        let t = self
            .weight
            .reshape((self.o, self.c * self.k * self.k))?
            .t()?
            .contiguous()?;
        // Another thread may have set it meanwhile: the same values either way.
        Ok(self.transposed.get_or_init(|| t))
    }

    /// A matrix product over channels (1×1, stride 1, no padding), as `conv1x1_bias_act`.
    fn pointwise(&self, pad: [usize; 4]) -> bool {
        self.k == 1 && self.stride == 1 && pad == [0; 4]
    }
}

/// The block's convolutions: the main path, then the shortcut's projection if it has one.
pub struct Residual {
    main: Vec<Unit>,
    shortcut: Option<Unit>,
}

impl Residual {
    pub fn new(main: Vec<Unit>, shortcut: Option<Unit>) -> candle_core::Result<Residual> {
        let (Some(first), Some(last)) = (main.first(), main.last()) else {
            candle_core::bail!("residual block: no convolutions")
        };
        let chained = main.windows(2).all(|p| p[0].o == p[1].c);
        let shortcut_fits = match &shortcut {
            Some(s) => s.c == first.c && s.o == last.o,
            None => first.c == last.o && main.iter().all(|u| u.stride == 1),
        };
        if !chained || !shortcut_fits {
            candle_core::bail!("residual block: the convolutions' channels do not chain")
        }
        Ok(Residual { main, shortcut })
    }

    /// The block on `(N, C, H, W)`, with each convolution's padding `[top, bottom, left,
    /// right]`: the main path's, then the shortcut's.
    pub fn forward(self: &Arc<Self>, x: &Tensor, pads: Vec<[usize; 4]>) -> candle_core::Result<Tensor> {
        let units = self.main.len() + self.shortcut.is_some() as usize;
        if pads.len() != units || x.dim(1)? != self.main[0].c || x.dtype() != self.main[0].weight.dtype() {
            candle_core::bail!(
                "residual block: needs {} channels of {:?} and {units} paddings, got {:?} {:?}",
                self.main[0].c,
                self.main[0].weight.dtype(),
                x.dtype(),
                x.dims()
            );
        }
        let op = Op {
            block: self.clone(),
            pads,
            keep: x.track_op(),
            saved: Mutex::new(None),
        };
        x.contiguous()?.apply_op1(op)
    }
}

/// The main path's activations after their ReLUs (all but the last unit's), and each
/// unit's input size `(C, H, W)`.
struct Saved<T> {
    acts: Vec<Vec<T>>,
    dims: Vec<(usize, usize, usize)>,
}

/// What a forward pass gives: the kept activations, the output and its size `(OH, OW)`.
type Forward<T> = (Saved<T>, Vec<T>, (usize, usize));

enum Kept {
    F32(Saved<f32>),
    F64(Saved<f64>),
}

/// The element types the op runs in.
trait Real: Element {
    fn kept(s: Saved<Self>) -> Kept;
    fn saved(k: &Kept) -> Option<&Saved<Self>>;
    fn storage(v: Vec<Self>) -> CpuStorage;
}

impl Real for f32 {
    fn kept(s: Saved<f32>) -> Kept {
        Kept::F32(s)
    }
    fn saved(k: &Kept) -> Option<&Saved<f32>> {
        match k {
            Kept::F32(s) => Some(s),
            Kept::F64(_) => None,
        }
    }
    fn storage(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Real for f64 {
    fn kept(s: Saved<f64>) -> Kept {
        Kept::F64(s)
    }
    fn saved(k: &Kept) -> Option<&Saved<f64>> {
        match k {
            Kept::F64(s) => Some(s),
            Kept::F32(_) => None,
        }
    }
    fn storage(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

struct Op {
    block: Arc<Residual>,
    pads: Vec<[usize; 4]>,
    /// Whether to keep the main path's activations for the backward pass.
    keep: bool,
    saved: Mutex<Option<Kept>>,
}

impl Op {
    /// `act(conv(x) + b)` for unit `i` (the shortcut is the last index) on `(N, C, H, W)`.
    fn unit<T: Real>(
        &self,
        i: usize,
        u: &Unit,
        x: &[T],
        (n, c, h, w): (usize, usize, usize, usize),
        act: Act,
    ) -> candle_core::Result<(Vec<T>, (usize, usize))> {
        let pad = self.pads[i];
        with_values::<T, _>(&u.weight, |k| {
            with_values::<T, _>(&u.bias, |b| {
                if u.pointwise(pad) {
                    let hw = h * w;
                    let mut y = matmul_batch(n, (u.o, hw, c), k, (c, 1), x, c * hw, (hw, 1));
                    epilogue(&mut y, b, u.o, hw, act);
                    Ok((y, (h, w)))
                } else {
                    let conv = Conv2d { stride: u.stride, pad };
                    conv::bias_act_forward(x, (n, c, h, w), k, (u.o, u.k, u.k), b, conv, act, u.winograd.as_deref())
                }
            })
        })
    }

    /// Unit `i`'s input gradient from the gradient `g` before its activation, added onto
    /// `acc` when given (by the product itself for a 1×1 convolution).
    fn unit_grad<T: Real>(
        &self,
        i: usize,
        u: &Unit,
        g: &[T],
        (n, c, h, w): (usize, usize, usize, usize),
        acc: Option<Vec<T>>,
    ) -> candle_core::Result<Vec<T>> {
        let pad = self.pads[i];
        let hw = h * w;
        if u.pointwise(pad) {
            return with_values::<T, _>(u.transposed()?, |kt| match acc {
                Some(mut gx) => {
                    for (gxi, gi) in gx.chunks_mut(c * hw).zip(g.chunks(u.o * hw)) {
                        matmul((c, hw, u.o), gxi, kt, (u.o, 1), gi, (hw, 1), true);
                    }
                    Ok(gx)
                }
                None => Ok(matmul_batch(n, (c, hw, u.o), kt, (u.o, 1), g, u.o * hw, (hw, 1))),
            });
        }
        let conv = Conv2d { stride: u.stride, pad };
        let (xdims, kdims) = ((n, c, h, w), (u.o, u.k, u.k));
        let winograd = u.winograd.as_ref();
        let mut gx = with_values::<T, _>(&u.weight, |k| {
            if conv::winograd_grad_input(winograd, xdims, kdims, conv)? {
                conv::grad_input(g, xdims, k, None, kdims, conv, winograd)
            } else {
                with_values::<T, _>(u.transposed()?, |kt| {
                    conv::grad_input(g, xdims, k, Some(kt), kdims, conv, winograd)
                })
            }
        })?;
        if let Some(a) = acc {
            super::simd(&mut gx, |gx| gx.iter_mut().zip(&a).for_each(|(v, &s)| *v += s));
        }
        Ok(gx)
    }

    /// Forward: what the backward pass keeps, and the output with its size.
    fn run<T: Real>(&self, x: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> candle_core::Result<Forward<T>> {
        let b = &self.block;
        let mut acts: Vec<Vec<T>> = Vec::new();
        let mut dims = vec![(c, h, w)];
        for (i, u) in b.main.iter().enumerate() {
            let act = if i + 1 < b.main.len() { Act::Relu } else { Act::Identity };
            let (ci, hi, wi) = dims[i];
            let input = acts.last().map_or(x, |a| a.as_slice());
            let (y, (oh, ow)) = self.unit(i, u, input, (n, ci, hi, wi), act)?;
            dims.push((u.o, oh, ow));
            acts.push(y);
        }
        let (_, oh, ow) = dims.pop().expect("one size per unit and the output's");
        let mut y = acts.pop().expect("a block has convolutions");
        // The addition and ReLU as `add_relu` computes them (main path + shortcut).
        let projected = match &b.shortcut {
            Some(u) => Some(self.unit(b.main.len(), u, x, (n, c, h, w), Act::Identity)?.0),
            None => None,
        };
        let s = projected.as_deref().unwrap_or(x);
        if s.len() != y.len() {
            candle_core::bail!(
                "residual block: the main path gives {} values of {n}×{c}×{h}×{w}, the shortcut {}",
                y.len(),
                s.len()
            )
        }
        super::simd(&mut y, |y| y.iter_mut().zip(s).for_each(|(v, &t)| *v += t));
        apply_act(&mut y, Act::Relu);
        Ok((Saved { acts, dims }, y, (oh, ow)))
    }

    /// Backward: the input gradient from the output `y` and its gradient `gy`.
    fn grad<T: Real>(&self, gy: &[T], y: &[T], s: &Saved<T>, n: usize) -> candle_core::Result<Vec<T>> {
        let b = &self.block;
        // The last ReLU's mask, applied while copying out of the shared gradient.
        let g = act_backward(gy, y, Act::Relu);
        let dims = |i: usize| {
            let (c, h, w) = s.dims[i];
            (n, c, h, w)
        };
        let projected = match &b.shortcut {
            Some(u) => Some(self.unit_grad(b.main.len(), u, &g, dims(0), None)?),
            None => None,
        };
        let mut inner: Option<Vec<T>> = None;
        for i in (1..b.main.len()).rev() {
            let mut gi = self.unit_grad(i, &b.main[i], inner.as_deref().unwrap_or(&g), dims(i), None)?;
            act_mask(&mut gi, &s.acts[i - 1], Act::Relu);
            inner = Some(gi);
        }
        let inner = inner.unwrap_or_else(|| g.clone());
        // The shortcut's gradient (`g` itself for the identity) takes the first unit's.
        self.unit_grad(0, &b.main[0], &inner, dims(0), Some(projected.unwrap_or(g)))
    }

    fn forward_storage<T: Real>(
        &self,
        x: &[T],
        dims: (usize, usize, usize, usize),
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (saved, y, (oh, ow)) = self.run(x, dims)?;
        if self.keep {
            *self.saved.lock().expect("residual block state") = Some(T::kept(saved));
        }
        let o = self.block.main.last().map_or(0, |u| u.o);
        Ok((T::storage(y), Shape::from((dims.0, o, oh, ow))))
    }

    fn backward<T: Real>(&self, x: &Tensor, y: &Tensor, gy: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims4()?;
        let mut saved = self.saved.lock().expect("residual block state");
        // Recomputed if the forward pass did not keep them (its input was a constant then).
        if saved.is_none() {
            let s = with_values::<T, _>(x, |xs| Ok(self.run(xs, dims)?.0))?;
            *saved = Some(T::kept(s));
        }
        let s = saved
            .as_ref()
            .and_then(T::saved)
            .ok_or_else(|| candle_core::Error::Msg("residual block: dtype changed".into()))?;
        let gx = with_values::<T, _>(gy, |g| with_values::<T, _>(y, |yv| self.grad(g, yv, s, dims.0)))?;
        Tensor::from_vec(gx, x.shape(), x.device())
    }
}

impl CustomOp1 for Op {
    fn name(&self) -> &'static str {
        "cnnscope-residual"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = l.shape().dims4()?;
        match s {
            CpuStorage::F32(v) => self.forward_storage(super::contiguous_slice(v, l)?, dims),
            CpuStorage::F64(v) => self.forward_storage(super::contiguous_slice(v, l)?, dims),
            _ => candle_core::bail!("residual block: f32 or f64 input"),
        }
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (x, y, gy) = (arg.contiguous()?, res.contiguous()?, grad_res.contiguous()?);
        let gx = match x.dtype() {
            candle_core::DType::F32 => self.backward::<f32>(&x, &y, &gy)?,
            candle_core::DType::F64 => self.backward::<f64>(&x, &y, &gy)?,
            d => candle_core::bail!("residual block: f32 or f64 input, not {d:?}"),
        };
        Ok(Some(gx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv2d_bias_act;
    use crate::ops::max_diff;
    use crate::ops::pointwise::conv1x1_bias_act;
    use candle_core::{DType, Device, Var};

    /// One convolution's parts: weight, bias, stride, padding, transformed kernel.
    struct Part {
        w: Tensor,
        b: Tensor,
        stride: usize,
        pad: [usize; 4],
        winograd: Option<Arc<Kernel>>,
    }

    fn part(dt: DType, o: usize, c: usize, k: usize, stride: usize, pad: [usize; 4]) -> Part {
        let dev = Device::Cpu;
        let w = (Tensor::randn(0f64, 1.0, (o, c, k, k), &dev).unwrap() / ((c * k * k) as f64).sqrt())
            .unwrap()
            .to_dtype(dt)
            .unwrap();
        let b = Tensor::randn(0f64, 0.3, o, &dev).unwrap().to_dtype(dt).unwrap();
        let winograd = (k == 3 && stride == 1 && crate::ops::winograd::wide(c, o))
            .then(|| Kernel::new(&w).unwrap().map(Arc::new))
            .flatten();
        Part {
            w,
            b,
            stride,
            pad,
            winograd,
        }
    }

    /// The separate ops, as ResNet's blocks ran before.
    fn separate(x: &Tensor, p: &Part, act: Act) -> Tensor {
        let (o, c, k, _) = p.w.dims4().unwrap();
        if k == 1 && p.stride == 1 && p.pad == [0; 4] {
            conv1x1_bias_act(x, &p.w.reshape((o, c)).unwrap(), &p.b, act).unwrap()
        } else {
            conv2d_bias_act(x, &p.w, &p.b, p.stride, p.pad, act, p.winograd.as_ref()).unwrap()
        }
    }

    /// The fused block against the separate ops, in f64 and f32: the same output bits and
    /// the input gradient within rounding, for bottleneck and basic blocks, with and without
    /// a projection, at stride 1 and 2 (one with asymmetric padding), one by Winograd's
    /// algorithm; the ReLUs must both pass and stop some gradient or their masks go untested.
    #[test]
    fn matches_the_separate_ops() {
        let dev = Device::Cpu;
        let p1 = [1; 4];
        // (input channels, main path (o, k, stride, pad), projection (o, stride), h, w, n)
        type Case = (
            usize,
            Vec<(usize, usize, usize, [usize; 4])>,
            Option<(usize, usize)>,
            usize,
            usize,
            usize,
        );
        let cases: Vec<Case> = vec![
            (
                16,
                vec![(8, 1, 1, [0; 4]), (8, 3, 1, p1), (16, 1, 1, [0; 4])],
                None,
                9,
                7,
                2,
            ),
            (
                12,
                vec![(8, 1, 1, [0; 4]), (8, 3, 2, p1), (32, 1, 1, [0; 4])],
                Some((32, 2)),
                11,
                10,
                2,
            ),
            (8, vec![(8, 3, 1, p1), (8, 3, 1, p1)], None, 7, 9, 3),
            (
                6,
                vec![(10, 3, 2, [0, 1, 0, 1]), (10, 3, 1, p1)],
                Some((10, 2)),
                12,
                10,
                1,
            ),
            (256, vec![(256, 3, 1, p1), (256, 3, 1, p1)], None, 16, 16, 1),
        ];
        for dt in [DType::F64, DType::F32] {
            for (c, main, proj, h, w, n) in &cases {
                let mut cin = *c;
                let parts: Vec<Part> = main
                    .iter()
                    .map(|&(o, k, s, pad)| {
                        let p = part(dt, o, cin, k, s, pad);
                        cin = o;
                        p
                    })
                    .collect();
                let short = proj.map(|(o, s)| part(dt, o, *c, 1, s, [0; 4]));
                if *c == 256 {
                    assert!(parts.iter().all(|p| p.winograd.is_some()), "the case runs Winograd's");
                }
                let unit = |p: &Part| Unit::new(&p.w, &p.b, p.stride, p.winograd.as_ref()).unwrap();
                let block =
                    Arc::new(Residual::new(parts.iter().map(unit).collect(), short.as_ref().map(unit)).unwrap());
                let pads = parts.iter().chain(&short).map(|p| p.pad).collect();
                let xt = Tensor::randn(0f64, 1.0, (*n, *c, *h, *w), &dev)
                    .unwrap()
                    .to_dtype(dt)
                    .unwrap();
                let x = Var::from_tensor(&xt).unwrap();
                let ours = block.forward(&x, pads).unwrap();
                let mut y = x.as_tensor().clone();
                for (i, p) in parts.iter().enumerate() {
                    let act = if i + 1 < parts.len() { Act::Relu } else { Act::Identity };
                    y = separate(&y, p, act);
                    if i + 1 < parts.len() {
                        let zeros = y.eq(0.0).unwrap().to_dtype(DType::F64).unwrap().mean_all().unwrap();
                        let z = zeros.to_scalar::<f64>().unwrap();
                        assert!(z > 0.05 && z < 0.95, "the ReLU after unit {i} is {z} zeros");
                    }
                }
                let s = match &short {
                    Some(p) => separate(x.as_tensor(), p, Act::Identity),
                    None => x.as_tensor().clone(),
                };
                let theirs = crate::ops::add_relu(&y, &s, false).unwrap();
                let what = format!("{dt:?} {c} {main:?} {proj:?}");
                assert_eq!(ours.dims(), theirs.dims(), "{what}");
                assert_eq!(max_diff(&ours, &theirs), 0.0, "forward, {what}");
                let probe = Tensor::randn(0f64, 1.0, ours.dims(), &dev)
                    .unwrap()
                    .to_dtype(dt)
                    .unwrap();
                let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                let (a, b) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
                let scale = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
                let scale = scale.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
                let tol = if dt == DType::F64 { 1e-12 } else { 1e-5 };
                assert!(scale > 0.0, "{what}");
                assert!(
                    max_diff(a, b) <= tol * scale,
                    "input gradient, {what}: {} of {scale}",
                    max_diff(a, b)
                );
            }
        }
    }

    /// Without a gradient graph nothing is kept, and a backward pass through a constant
    /// input recomputes what it needs, to the same bits.
    #[test]
    fn keeps_activations_only_for_gradients() {
        let dev = Device::Cpu;
        let a = part(DType::F32, 6, 4, 3, 1, [1; 4]);
        let b = part(DType::F32, 4, 6, 3, 1, [1; 4]);
        let unit = |p: &Part| Unit::new(&p.w, &p.b, p.stride, None).unwrap();
        let block = Arc::new(Residual::new(vec![unit(&a), unit(&b)], None).unwrap());
        let op = |x: &Tensor| Op {
            block: block.clone(),
            pads: vec![[1; 4]; 2],
            keep: x.track_op(),
            saved: Mutex::new(None),
        };
        let x = Tensor::randn(0f32, 1.0, (2, 4, 5, 6), &dev).unwrap();
        assert!(!op(&x).keep);
        let v = Var::from_tensor(&x).unwrap();
        assert!(op(v.as_tensor()).keep);
        let o = op(&x);
        let y = x.apply_op1_no_bwd(&o).unwrap();
        assert!(o.saved.lock().unwrap().is_none());
        let gy = Tensor::ones(y.shape(), DType::F32, &dev).unwrap();
        let gx = o.bwd(&x, &y, &gy).unwrap().unwrap();
        let reference = block
            .forward(v.as_tensor(), vec![[1; 4]; 2])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(max_diff(&gx, reference.get(&v).unwrap()), 0.0);
    }

    /// Channels that do not chain are refused, not run.
    #[test]
    fn refuses_channels_that_do_not_chain() {
        let a = part(DType::F32, 6, 4, 3, 1, [1; 4]);
        let b = part(DType::F32, 5, 7, 3, 1, [1; 4]);
        let unit = |p: &Part| Unit::new(&p.w, &p.b, p.stride, None).unwrap();
        let err = Residual::new(vec![unit(&a), unit(&b)], None).err().unwrap();
        assert!(err.to_string().contains("do not chain"), "{err}");
    }
}
