//! An inverted-residual ("MBConv") block as one op: 1×1 expansion + bias + ReLU6, depthwise
//! convolution + bias + ReLU6, 1×1 projection + bias, and the skip connection when the
//! shapes allow it.
//!
//! Built from the same kernels as the separate ops, so the forward pass gives the same bits.
//! The gain is in the backward pass: candle turns every graph node's gradient into a zero
//! tensor plus an addition, and every activation's gradient into a fresh buffer; here the
//! block is one node, the ReLU6 masks are applied in place and the skip connection's
//! gradient is accumulated by the last matrix product. The block's inner activations are
//! kept by the op for its backward pass only when its input takes part in a gradient graph.
//!
//! f32 only, without guided ReLUs and with constant weights: models use the separate ops
//! otherwise (guided backpropagation, weight gradients).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use super::bias::{epilogue, Act};
use super::contiguous_slice as slice;
use super::depthwise::{Depthwise, Geom, Post};
use super::pointwise::{matmul, matmul_batch};

/// A block's folded weights (batch norms already folded into the convolutions).
pub struct MbConv {
    /// `(m × c)` weight and `m` biases; `None` when the block does not expand (`m = c`).
    expand: Option<(Vec<f32>, Vec<f32>)>,
    /// `(m × k × k)` weight and `m` biases.
    depthwise: (Vec<f32>, Vec<f32>),
    /// `(o × m)` weight and `o` biases.
    project: (Vec<f32>, Vec<f32>),
    c: usize,
    m: usize,
    o: usize,
    k: usize,
    stride: usize,
    skip: bool,
}

fn values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()
}

impl MbConv {
    /// From the convolutions' (weight, bias) pairs: expansion `(m, c, 1, 1)`, depthwise
    /// `(m, 1, k, k)`, projection `(o, m, 1, 1)`.
    pub fn new(
        expand: Option<(&Tensor, &Tensor)>,
        depthwise: (&Tensor, &Tensor),
        project: (&Tensor, &Tensor),
        stride: usize,
        skip: bool,
    ) -> candle_core::Result<MbConv> {
        let (m, _, k, _) = depthwise.0.dims4()?;
        let (o, pm, _, _) = project.0.dims4()?;
        let c = match expand {
            Some((w, _)) => w.dim(1)?,
            None => m,
        };
        if pm != m || (skip && (c != o || stride != 1)) {
            candle_core::bail!("MBConv: inconsistent shapes ({c} → {m} → {o}, stride {stride}, skip {skip})");
        }
        let pair =
            |(w, b): (&Tensor, &Tensor)| -> candle_core::Result<(Vec<f32>, Vec<f32>)> { Ok((values(w)?, values(b)?)) };
        Ok(MbConv {
            expand: expand.map(pair).transpose()?,
            depthwise: pair(depthwise)?,
            project: pair(project)?,
            c,
            m,
            o,
            k,
            stride,
            skip,
        })
    }

    /// The block on `(N, C, H, W)` with depthwise padding `[top, bottom, left, right]`.
    pub fn forward(self: &Arc<Self>, x: &Tensor, pad: [usize; 4]) -> candle_core::Result<Tensor> {
        if x.dtype() != candle_core::DType::F32 || x.dim(1)? != self.c {
            candle_core::bail!(
                "MBConv: needs f32 input with {} channels, got {:?} {:?}",
                self.c,
                x.dtype(),
                x.dims()
            );
        }
        let op = Op {
            block: self.clone(),
            conv: Depthwise {
                stride: self.stride,
                pad,
            },
            keep: x.track_op(),
            saved: Mutex::new(None),
        };
        x.contiguous()?.apply_op1(op)
    }
}

/// The inner activations after their ReLU6: expansion (if any) and depthwise.
struct Saved {
    e: Option<Vec<f32>>,
    d: Vec<f32>,
}

struct Op {
    block: Arc<MbConv>,
    conv: Depthwise,
    /// Whether to keep the inner activations for the backward pass.
    keep: bool,
    saved: Mutex<Option<Saved>>,
}

impl Op {
    fn geom(&self, n: usize, h: usize, w: usize) -> candle_core::Result<Geom> {
        let b = &self.block;
        self.conv
            .geom(&Shape::from((n, b.m, h, w)), &Shape::from((b.m, 1, b.k, b.k)))
    }

    /// Forward: the saved activations and the output.
    fn run(&self, x: &[f32], (n, h, w): (usize, usize, usize)) -> candle_core::Result<(Saved, Vec<f32>, Geom)> {
        let b = &self.block;
        let (c, m, o, hw) = (b.c, b.m, b.o, h * w);
        let e = b.expand.as_ref().map(|(we, be)| {
            let mut e = matmul_batch(n, (m, hw, c), we, (c, 1), x, c * hw, (hw, 1));
            epilogue(&mut e, be, m, hw, Act::Relu6);
            e
        });
        let g = self.geom(n, h, w)?;
        let (kd, bd) = &b.depthwise;
        let d = self
            .conv
            .forward(e.as_deref().unwrap_or(x), kd, &g, None, Post::Bias(bd, Act::Relu6));
        let ohw = g.oh * g.ow;
        let (wp, bp) = &b.project;
        let mut y = matmul_batch(n, (o, ohw, m), wp, (m, 1), &d, m * ohw, (ohw, 1));
        epilogue(&mut y, bp, o, ohw, Act::Identity);
        if b.skip {
            super::simd(&mut y, |y| y.iter_mut().zip(x).for_each(|(v, &s)| *v += s));
        }
        Ok((Saved { e, d }, y, g))
    }

    /// Backward: the input gradient from the output gradient.
    fn grad(&self, gy: &[f32], s: &Saved, g: &Geom, (n, h, w): (usize, usize, usize)) -> Vec<f32> {
        let b = &self.block;
        let (c, m, o, hw, ohw) = (b.c, b.m, b.o, h * w, g.oh * g.ow);
        let (wp, _) = &b.project;
        let gd = matmul_batch(n, (m, ohw, o), wp, (1, m), gy, o * ohw, (ohw, 1));
        // Both ReLU6 masks are applied plane by plane inside the depthwise backward.
        let mut ge = self
            .conv
            .grad_input_masked(&gd, &b.depthwise.0, g, Some(&s.d), s.e.as_deref());
        match (&b.expand, &s.e) {
            (Some((we, _)), Some(_)) => {
                if !b.skip {
                    return matmul_batch(n, (c, hw, m), we, (1, c), &ge, m * hw, (hw, 1));
                }
                // The skip connection's gradient is where the product accumulates.
                let mut gx = gy.to_vec();
                for (gxi, gei) in gx.chunks_mut(c * hw).zip(ge.chunks(m * hw)) {
                    matmul((c, hw, m), gxi, we, (1, c), gei, (hw, 1), true);
                }
                gx
            }
            _ => {
                if b.skip {
                    super::simd(&mut ge, |ge| ge.iter_mut().zip(gy).for_each(|(v, &s)| *v += s));
                }
                ge
            }
        }
    }
}

fn f32s<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => slice(v, l),
        _ => candle_core::bail!("MBConv: f32 only"),
    }
}

impl CustomOp1 for Op {
    fn name(&self) -> &'static str {
        "cnnscope-mbconv"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, _, h, w) = l.shape().dims4()?;
        let (saved, y, g) = self.run(f32s(s, l)?, (n, h, w))?;
        if self.keep {
            *self.saved.lock().expect("MBConv state") = Some(saved);
        }
        Ok((CpuStorage::F32(y), Shape::from((n, self.block.o, g.oh, g.ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (n, _, h, w) = arg.dims4()?;
        let dims = (n, h, w);
        let x = arg.contiguous()?;
        let gy = grad_res.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (gs, gl) = gy.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(gs)) = (&*xs, &*gs) else {
            candle_core::bail!("MBConv: CPU only")
        };
        let mut saved = self.saved.lock().expect("MBConv state");
        // Recomputed if the forward pass did not keep them (its input was a constant then).
        if saved.is_none() {
            *saved = Some(self.run(f32s(xs, xl)?, dims)?.0);
        }
        let g = self.geom(n, h, w)?;
        let gx = self.grad(f32s(gs, gl)?, saved.as_ref().expect("just set"), &g, dims);
        Tensor::from_vec(gx, arg.shape(), arg.device()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::depthwise::depthwise_conv2d_bias_act;
    use crate::ops::max_diff;
    use crate::ops::pointwise::conv1x1_bias_act;
    use candle_core::{Device, Var};

    /// The fused block against the separate ops: the same output bits, and the input
    /// gradient, with and without expansion and skip, at stride 1 and 2.
    #[test]
    fn matches_the_separate_ops() {
        let dev = Device::Cpu;
        for (c, m, o, k, stride, pad, expand) in [
            (8, 48, 8, 3, 1, [1, 1, 1, 1], true),    // skip
            (8, 48, 12, 5, 2, [1, 2, 1, 2], true),   // TF SAME at stride 2
            (16, 16, 8, 3, 1, [1, 1, 1, 1], false),  // no expansion (EfficientNet's block 0)
            (16, 16, 16, 3, 1, [1, 1, 1, 1], false), // no expansion, skip
        ] {
            let skip = stride == 1 && c == o;
            let r = |shape: &[usize], s: f64| Tensor::randn(0f32, s as f32, shape, &dev).unwrap();
            let we = r(&[m, c, 1, 1], 0.5);
            let be = (r(&[m], 1.0) + 1.5).unwrap();
            let wd = r(&[m, 1, k, k], 0.6);
            let bd = (r(&[m], 1.0) + 1.0).unwrap();
            let wp = r(&[o, m, 1, 1], 0.3);
            let bp = r(&[o], 0.5);
            let block =
                Arc::new(MbConv::new(expand.then_some((&we, &be)), (&wd, &bd), (&wp, &bp), stride, skip).unwrap());
            let x = Var::from_tensor(&r(&[2, c, 13, 21], 1.5)).unwrap();
            let ours = block.forward(&x, pad).unwrap();
            let mut h = x.as_tensor().clone();
            if expand {
                h = conv1x1_bias_act(&h, &we.reshape((m, c)).unwrap(), &be, Act::Relu6).unwrap();
            }
            h = depthwise_conv2d_bias_act(&h, &wd, &bd, stride, pad, Act::Relu6).unwrap();
            // Some activations must be clipped at 0 and at 6, or the masks go untested.
            let v = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(v.contains(&0.0) && v.contains(&6.0) && v.iter().any(|&a| a > 0.0 && a < 6.0));
            h = conv1x1_bias_act(&h, &wp.reshape((o, m)).unwrap(), &bp, Act::Identity).unwrap();
            if skip {
                h = (h + x.as_tensor()).unwrap();
            }
            assert_eq!(ours.dims(), h.dims());
            assert_eq!(max_diff(&ours, &h), 0.0, "forward, {c}→{m}→{o} s{stride}");
            let probe = r(ours.dims(), 1.0);
            let g1 = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (h * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let (a, b) = (g1.get(&x).unwrap(), g2.get(&x).unwrap());
            let scale = b
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                max_diff(a, b) <= 1e-5 * scale as f64,
                "input gradient, {c}→{m}→{o} s{stride}: {} of {scale}",
                max_diff(a, b)
            );
        }
    }

    /// Without a gradient graph nothing is kept, and a backward pass through a kept
    /// constant input recomputes what it needs.
    #[test]
    fn keeps_activations_only_for_gradients() {
        let dev = Device::Cpu;
        let t = |shape: &[usize]| Tensor::randn(0f32, 0.5, shape, &dev).unwrap();
        let (we, be, wd, bd, wp, bp) = (
            t(&[12, 4, 1, 1]),
            t(&[12]),
            t(&[12, 1, 3, 3]),
            t(&[12]),
            t(&[4, 12, 1, 1]),
            t(&[4]),
        );
        let block = Arc::new(MbConv::new(Some((&we, &be)), (&wd, &bd), (&wp, &bp), 1, true).unwrap());
        let op = |x: &Tensor| Op {
            block: block.clone(),
            conv: Depthwise { stride: 1, pad: [1; 4] },
            keep: x.track_op(),
            saved: Mutex::new(None),
        };
        let x = t(&[1, 4, 5, 5]);
        assert!(!op(&x).keep);
        let v = Var::from_tensor(&x).unwrap();
        assert!(op(v.as_tensor()).keep);
        // An op that kept nothing still differentiates (by recomputing).
        let o = op(&x);
        let y = x.apply_op1_no_bwd(&o).unwrap();
        assert!(o.saved.lock().unwrap().is_none());
        let gy = Tensor::ones(y.shape(), candle_core::DType::F32, &dev).unwrap();
        let gx = o.bwd(&x, &y, &gy).unwrap().unwrap();
        let reference = block
            .forward(v.as_tensor(), [1; 4])
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(max_diff(&gx, reference.get(&v).unwrap()), 0.0);
    }
}
