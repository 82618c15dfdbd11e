//! `cnnscope bench`: micro-benchmarks of the kernels the gallery's time goes to, each the
//! median of several runs. `bench/torch_micro.py` measures the same operations in PyTorch;
//! docs/performance.md has the procedure.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::VarBuilder;

use crate::error::Result;
use crate::models::nn::{Conv, ConvConfig, Pad};
use crate::models::{self, InputSpec, Select, Tap};
use crate::ops::{depthwise_conv2d, max_pool2d};

/// Median milliseconds of `repeat` runs of `f`, after one warm-up run.
fn time(repeat: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

fn randn(shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1.0, shape, &Device::Cpu)?)
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, groups: usize) -> Result<Conv> {
    let map: HashMap<String, Tensor> = [("weight".to_string(), (randn(&[cout, cin / groups, k, k])? * 0.1)?)].into();
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    let cfg = ConvConfig {
        stride,
        pad: Pad::Sym(pad),
        groups,
        bias: false,
    };
    Ok(Conv::new(cin, cout, k, cfg, vb)?)
}

/// Forward, and forward + backward to the input, of `f` on an input of `shape`.
fn fwd_bwd(repeat: usize, shape: &[usize], f: &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<(f64, f64)> {
    let x = randn(shape)?;
    let fwd = time(repeat, || f(&x).map(|_| ()))?;
    let both = time(repeat, || {
        let v = Var::from_tensor(&x)?;
        let y = f(v.as_tensor())?;
        let g = y.sum_all()?.backward()?;
        g.get(v.as_tensor())
            .map(|_| ())
            .ok_or_else(|| crate::Error::msg("no input gradient"))
    })?;
    Ok((fwd, both))
}

/// Runs the benchmarks and returns (name, forward ms, forward + backward ms) rows.
/// `only`: run just the benchmarks whose name contains it (case-insensitive).
pub fn run(weights: &Path, repeat: usize, only: Option<&str>, log: &dyn Fn(&str)) -> Result<Vec<(String, f64, f64)>> {
    let mut rows = Vec::new();
    let only = only.map(str::to_lowercase);
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.to_lowercase().contains(o));
    let mut add = |name: &str, (f, b): (f64, f64)| {
        log(&format!(
            "{name:<58} forward {f:>9.2} ms   forward+backward {b:>9.2} ms"
        ));
        rows.push((name.to_string(), f, b));
    };
    let c1 = conv(3, 64, 3, 1, 1, 1)?;
    let c2 = conv(64, 64, 3, 1, 1, 1)?;
    if wanted("conv 3→64 then 64→64, 3×3, 224², batch 1") {
        add(
            "conv 3→64 then 64→64, 3×3, 224², batch 1",
            fwd_bwd(repeat, &[1, 3, 224, 224], &|x| Ok(c2.forward(&c1.forward(x)?)?))?,
        );
    }
    let k = (randn(&[96, 1, 3, 3])? * 0.1)?;
    if wanted("depthwise 3×3, 96 channels, 112², batch 1") {
        add(
            "depthwise 3×3, 96 channels, 112², batch 1",
            fwd_bwd(repeat, &[1, 96, 112, 112], &|x| Ok(depthwise_conv2d(x, &k, 1, [1; 4])?))?,
        );
    }
    let pw = conv(96, 24, 1, 1, 0, 1)?;
    if wanted("1×1 conv 96→24, 112², batch 1") {
        add(
            "1×1 conv 96→24, 112², batch 1",
            fwd_bwd(repeat, &[1, 96, 112, 112], &|x| Ok(pw.forward(x)?))?,
        );
    }
    if wanted("max-pool 3×3 stride 2 pad 1, 64 channels, 112², batch 1") {
        add(
            "max-pool 3×3 stride 2 pad 1, 64 channels, 112², batch 1",
            fwd_bwd(repeat, &[1, 64, 112, 112], &|x| Ok(max_pool2d(x, 3, 2, 1)?))?,
        );
    }
    for (arch, name) in [
        ("resnet50", "ResNet-50, 224², batch 1 (backward: to the input)"),
        ("vgg16", "VGG-16, 224², batch 1 (backward: to the input)"),
    ] {
        if wanted(name) {
            let m = random_model(arch)?;
            add(name, model_fwd_bwd(repeat, m.as_ref())?);
        }
    }
    if wanted("EfficientNet-Lite0, 224², batch 1 (backward: to the input)") {
        let arch = models::architecture("efficientnet-lite0").expect("built in");
        let m = models::load(arch, weights, &IMAGENET, 1000)?;
        add(
            "EfficientNet-Lite0, 224², batch 1 (backward: to the input)",
            model_fwd_bwd(repeat, m.model.as_ref())?,
        );
    }
    Ok(rows)
}

const IMAGENET: InputSpec = InputSpec {
    height: 224,
    width: 224,
    channels: 3,
};

/// A whole network's forward, and forward + backward of one logit to the input.
fn model_fwd_bwd(repeat: usize, m: &dyn models::Model) -> Result<(f64, f64)> {
    let x = randn(&[1, 3, 224, 224])?;
    let fwd = time(repeat, || {
        m.forward(&x, &mut Tap::default())?;
        Ok(())
    })?;
    let both = time(repeat, || {
        models::gradients(m, &x, &[0], Select::None)?;
        Ok(())
    })?;
    Ok((fwd, both))
}

/// A built-in architecture with seeded random weights (He-normal convolutions and linear
/// layers, unit batch norms): the time does not depend on the values, and no 100–500 MB
/// weights file has to exist.
fn random_model(id: &str) -> Result<Box<dyn models::Model>> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let arch = models::architecture(id).expect("built in");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut map = HashMap::new();
    for (name, shape) in (arch.tensors)(&IMAGENET, 1000) {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product();
        let v: Vec<f32> = if shape.len() >= 2 {
            let d = rand_distr::Normal::new(0.0, (2.0 / fan_in as f32).sqrt()).expect("finite");
            (0..n).map(|_| d.sample(&mut rng)).collect()
        } else if name.ends_with("running_var") || name.ends_with(".weight") {
            vec![1.0; n]
        } else {
            vec![0.0; n]
        };
        map.insert(name, Tensor::from_vec(v, shape, &Device::Cpu)?);
    }
    let vb = VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
    Ok((arch.build)(vb, &IMAGENET, 1000)?)
}
