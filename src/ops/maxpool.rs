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
}

impl MaxPool2d {
    fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.padding - self.kernel) / self.stride + 1
    }

    /// For each output element, the flat index (within its N·C plane) of the winning input.
    fn argmax<T: WithDType>(&self, x: &[T], dims: (usize, usize, usize, usize)) -> Vec<usize> {
        let (n, c, h, w) = dims;
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let mut idx = Vec::with_capacity(n * c * oh * ow);
        for plane in 0..n * c {
            let base = plane * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    let y0 = (oy * self.stride) as isize - self.padding as isize;
                    let x0 = (ox * self.stride) as isize - self.padding as isize;
                    let mut best: Option<(usize, f64)> = None;
                    for ky in 0..self.kernel as isize {
                        let y = y0 + ky;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        for kx in 0..self.kernel as isize {
                            let xx = x0 + kx;
                            if xx < 0 || xx >= w as isize {
                                continue;
                            }
                            let i = base + y as usize * w + xx as usize;
                            let v = x[i].to_f64();
                            // Strict '>' keeps the first maximum; NaN wins, so it propagates.
                            if best.map_or(true, |(_, b)| v > b || v.is_nan()) {
                                best = Some((i, v));
                            }
                        }
                    }
                    // A window always overlaps the input because padding < kernel.
                    idx.push(best.map(|(i, _)| i).unwrap_or(base));
                }
            }
        }
        idx
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

fn fwd_typed<T: WithDType>(op: &MaxPool2d, data: &[T], dims: (usize, usize, usize, usize)) -> Vec<T> {
    op.argmax(data, dims).into_iter().map(|i| data[i]).collect()
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "cnnscope-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = self.check(layout.shape())?;
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("max-pool: input must be contiguous".into()))?;
        let out_shape = Shape::from((dims.0, dims.1, self.out_size(dims.2), self.out_size(dims.3)));
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(fwd_typed(self, &v[start..end], dims)),
            CpuStorage::F64(v) => CpuStorage::F64(fwd_typed(self, &v[start..end], dims)),
            _ => candle_core::bail!("max-pool: only f32 and f64 are supported"),
        };
        Ok((out, out_shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dims = self.check(arg.shape())?;
        let total = dims.0 * dims.1 * dims.2 * dims.3;
        let grad = match arg.dtype() {
            candle_core::DType::F32 => {
                let x = arg.flatten_all()?.to_vec1::<f32>()?;
                let g = grad_res.flatten_all()?.to_vec1::<f32>()?;
                let mut out = vec![0f32; total];
                for (o, i) in self.argmax(&x, dims).into_iter().enumerate() {
                    out[i] += g[o];
                }
                Tensor::from_vec(out, arg.shape(), arg.device())?
            }
            candle_core::DType::F64 => {
                let x = arg.flatten_all()?.to_vec1::<f64>()?;
                let g = grad_res.flatten_all()?.to_vec1::<f64>()?;
                let mut out = vec![0f64; total];
                for (o, i) in self.argmax(&x, dims).into_iter().enumerate() {
                    out[i] += g[o];
                }
                Tensor::from_vec(out, arg.shape(), arg.device())?
            }
            dt => candle_core::bail!("max-pool backward: unsupported dtype {dt:?}"),
        };
        Ok(Some(grad))
    }
}

/// Max pooling over the last two dimensions of an `(N, C, H, W)` tensor.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool2d {
        kernel,
        stride,
        padding,
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
