//! 2-D max pooling with a correct backward pass.
//!
//! candle's own max-pool cannot be differentiated when kernel != stride, and where it can,
//! it passes back a fraction of the true gradient. Gradients are the product here, so the
//! pooling op is ours: the backward routes each output gradient to the input position
//! that won the max (the first one on ties, as PyTorch does), and sums where windows overlap.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};

#[derive(Debug, Clone, Copy)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// PyTorch's `ceil_mode`: a last, partial window where the stride leaves inputs over
    /// (one that starts inside the input or its leading padding).
    pub ceil: bool,
}

impl MaxPool2d {
    fn out_size(&self, n: usize) -> usize {
        let span = n + 2 * self.padding - self.kernel;
        if !self.ceil {
            return span / self.stride + 1;
        }
        let out = span.div_ceil(self.stride) + 1;
        if (out - 1) * self.stride >= n + self.padding {
            out - 1
        } else {
            out
        }
    }

    /// The window of output `o` along one dimension of size `n`: its input range.
    #[inline(always)]
    fn window(&self, o: usize, n: usize) -> std::ops::Range<usize> {
        let lo = (o * self.stride).saturating_sub(self.padding);
        let hi = (o * self.stride + self.kernel).saturating_sub(self.padding).min(n);
        // A window always overlaps the input because 2·padding ≤ kernel.
        lo..hi.max(lo + 1).min(n)
    }

    /// The maximum of each window; NaN wins, so it propagates.
    fn forward<T: WithDType>(&self, x: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let cols: Vec<_> = (0..ow).map(|ox| self.window(ox, w)).collect();
        let mut y = Vec::with_capacity(n * c * oh * ow);
        let mut rowmax = vec![T::zero(); w];
        super::simd_with(|| {
            for plane in x.chunks_exact(h * w) {
                for oy in 0..oh {
                    let rows = self.window(oy, h);
                    // The column maxima of the window's rows, then the maximum of each window's columns.
                    rowmax.copy_from_slice(&plane[rows.start * w..rows.start * w + w]);
                    for r in rows.start + 1..rows.end {
                        for (m, &v) in rowmax.iter_mut().zip(&plane[r * w..r * w + w]) {
                            *m = wins(v, *m);
                        }
                    }
                    for cr in &cols {
                        let mut m = rowmax[cr.start];
                        for &v in &rowmax[cr.start + 1..cr.end] {
                            m = wins(v, m);
                        }
                        y.push(m);
                    }
                }
            }
        });
        y
    }

    /// Routes each output's gradient to the first input of its window (in reading order)
    /// that holds the window's maximum `y`, as PyTorch does on ties; sums where windows overlap.
    fn backward<T: WithDType>(&self, x: &[T], y: &[T], gy: &[T], (n, c, h, w): (usize, usize, usize, usize)) -> Vec<T> {
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let cols: Vec<_> = (0..ow).map(|ox| self.window(ox, w)).collect();
        let mut gx = vec![T::zero(); n * c * h * w];
        for ((plane, gplane), (yp, gp)) in x
            .chunks_exact(h * w)
            .zip(gx.chunks_exact_mut(h * w))
            .zip(y.chunks_exact(oh * ow).zip(gy.chunks_exact(oh * ow)))
        {
            for oy in 0..oh {
                let rows = self.window(oy, h);
                for (ox, cr) in cols.iter().enumerate() {
                    let (m, g) = (yp[oy * ow + ox], gp[oy * ow + ox]);
                    let found = rows.clone().find_map(|r| {
                        cr.clone()
                            .map(|col| r * w + col)
                            .find(|&i| plane[i] == m || (is_nan(m) && is_nan(plane[i])))
                    });
                    // The maximum is one of the window's inputs, so it is always found.
                    if let Some(i) = found {
                        gplane[i] += g;
                    }
                }
            }
        }
        gx
    }

    fn check(&self, shape: &Shape) -> candle_core::Result<(usize, usize, usize, usize)> {
        let dims = shape.dims4()?;
        if self.kernel == 0 || self.stride == 0 || 2 * self.padding > self.kernel {
            candle_core::bail!(
                "max-pool: invalid kernel {} / stride {} / padding {}",
                self.kernel,
                self.stride,
                self.padding
            )
        }
        if dims.2 + 2 * self.padding < self.kernel || dims.3 + 2 * self.padding < self.kernel {
            candle_core::bail!("max-pool: input {:?} smaller than kernel {}", shape, self.kernel)
        }
        Ok(dims)
    }
}

#[inline(always)]
#[allow(clippy::eq_op)] // `v != v` is the NaN test for any float type
fn is_nan<T: WithDType>(v: T) -> bool {
    v != v
}

/// Whether `v` replaces the running maximum `m`: when larger, or NaN (which propagates);
/// ties keep the earlier value.
#[inline(always)]
fn wins<T: WithDType>(v: T, m: T) -> T {
    if v > m || is_nan(v) {
        v
    } else {
        m
    }
}

/// The input gradient from (x, y, gy): no backward of its own.
struct Backward(MaxPool2d);

impl candle_core::CustomOp3 for Backward {
    fn name(&self) -> &'static str {
        "cnnscope-max-pool2d-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.0.check(l1.shape())?;
        let out = dispatch!("max-pool backward", (s1, l1), (s2, l2), (s3, l3), |x, y, g| self
            .0
            .backward(x, y, g, dims));
        Ok((out, l1.shape().clone()))
    }
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "cnnscope-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.check(layout.shape())?;
        let out_shape = Shape::from((dims.0, dims.1, self.out_size(dims.2), self.out_size(dims.3)));
        let out = dispatch!("max-pool", (storage, layout), |x| self.forward(x, dims));
        Ok((out, out_shape))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(arg.apply_op3_no_bwd(
            res,
            &grad_res.contiguous()?,
            &Backward(*self),
        )?))
    }
}

/// Max pooling over the last two dimensions of an `(N, C, H, W)` tensor.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> candle_core::Result<Tensor> {
    max_pool2d_mode(x, kernel, stride, padding, false)
}

/// [`max_pool2d`] with PyTorch's `ceil_mode` when `ceil`.
pub fn max_pool2d_mode(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
    ceil: bool,
) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool2d {
        kernel,
        stride,
        padding,
        ceil,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The gradient of sum(pool(x) * w) for random x, w, checked by central differences in f64.
    fn check_fd(k: usize, s: usize, p: usize, h: usize) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, h, h), &dev).unwrap()).unwrap();
        let y = max_pool2d(&x, k, s, p).unwrap();
        let w = Tensor::randn(0f64, 1.0, y.shape(), &dev).unwrap();
        let loss = (y * &w).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        let gx = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let xv = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let f = |v: &Vec<f64>| -> f64 {
            let t = Tensor::from_vec(v.clone(), x.shape(), &dev).unwrap();
            (max_pool2d(&t, k, s, p).unwrap() * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let eps = 1e-6;
        for i in 0..xv.len() {
            let mut a = xv.clone();
            let mut b = xv.clone();
            a[i] += eps;
            b[i] -= eps;
            let fd = (f(&a) - f(&b)) / (2.0 * eps);
            assert!(
                (fd - gx[i]).abs() < 1e-5,
                "k{k} s{s} p{p} at {i}: analytic {} vs fd {fd}",
                gx[i]
            );
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        check_fd(2, 2, 0, 6);
        check_fd(3, 2, 1, 7); // ResNet's pool: overlapping windows, padding
        check_fd(3, 2, 0, 9); // AlexNet's pool
    }

    /// On ties the first input in reading order gets the gradient; NaN propagates.
    #[test]
    fn ties_go_to_the_first_maximum_and_nan_wins() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::ones((1, 1, 3, 3), candle_core::DType::F32, &dev).unwrap()).unwrap();
        let g = max_pool2d(&x, 2, 1, 0).unwrap().sum_all().unwrap().backward().unwrap();
        let got = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        let v = Tensor::new(&[[[[1.0f32, f32::NAN], [3.0, 2.0]]]], &dev).unwrap();
        let y = max_pool2d(&v, 2, 2, 0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(y[0].is_nan());
    }

    #[test]
    fn forward_matches_candle() {
        let x = Tensor::randn(0f32, 1.0, (2, 4, 10, 10), &Device::Cpu).unwrap();
        let ours = max_pool2d(&x, 2, 2, 0).unwrap();
        let theirs = x.max_pool2d(2).unwrap();
        let d = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(d, 0.0);
    }

    #[test]
    fn candle_builtin_gradient_is_scaled() {
        // Documents why this op exists: candle's 2x2 max-pool passes back a quarter of the
        // true gradient. If this ever starts failing, candle has been fixed.
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (1, 1, 4, 4), &Device::Cpu).unwrap()).unwrap();
        let theirs = x.max_pool2d(2).unwrap().sum_all().unwrap().backward().unwrap();
        let ours = max_pool2d(&x, 2, 2, 0).unwrap().sum_all().unwrap().backward().unwrap();
        let t = theirs.get(&x).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let o = ours.get(&x).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!((o - 4.0).abs() < 1e-12, "ours sums to {o}");
        assert!(
            (t - 4.0).abs() > 1e-6,
            "candle's gradient sums to {t}: it is correct now"
        );
    }
}
