//! Feature visualization by optimisation (Olah, Mordvintsev & Schubert 2017, "Feature
//! Visualization", Distill): the input that most excites one unit, found by gradient ascent
//! on the unit's mean activation from a random start, through a Fourier parameterisation
//! with decorrelated colour ([`param`]) and random transforms each step ([`transform`]).
//!
//! The network runs only up to the unit's layer ([`crate::models::forward_to`]) through
//! the project's own ops, with the batch holding every requested unit's image (and each
//! unit's diverse copies); the parameterisation and the transforms are small kernels with
//! their adjoints, outside candle's graph, whose gradient reaches them at the input.

pub mod param;
pub mod transform;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::models::{forward_to, Model, Tap};
pub use param::Kind;
pub use transform::Transforms;

/// How units are visualised (one set of settings per layer of the config).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The image is `size × size` (the network runs at this size).
    pub size: usize,
    pub steps: usize,
    /// Adam's learning rate.
    pub lr: f32,
    pub seed: u64,
    pub kind: Kind,
    /// Colour decorrelation (RGB models only).
    pub decorrelate: bool,
    pub transforms: Transforms,
    /// Minimise the unit instead.
    pub negative: bool,
    /// Images per unit; above 1 they are pushed apart by the diversity term.
    pub images: usize,
    /// Weight λ of the diversity term.
    pub diversity: f32,
    /// Added to every value before the sigmoid: below 0 the image starts dark (MNIST's
    /// black background) and ink appears only where the unit asks for it.
    pub offset: f32,
    /// Weight of an L2 penalty on the pixels, `−l2 · mean(p²)` (Simonyan et al. 2014).
    pub l2: f32,
}

/// The result for one unit.
#[derive(Debug, Clone)]
pub struct Visualization {
    pub unit: usize,
    /// Each image `c × size × size` on 0..1.
    pub images: Vec<Vec<f32>>,
    /// The unit's mean activation for each final image, untransformed (for `negative`,
    /// the value that was minimised).
    pub objective: Vec<f32>,
    /// The objective of each step under that step's transforms, averaged over the images.
    pub curve: Vec<f32>,
}

/// Where the optimiser reads the unit: at its layer, or just before the ReLU (or ReLU6)
/// that is its layer. Before a ReLU the objective is the unit's mean after the ReLU where
/// that is above 0 and its mean before the ReLU where it is 0, so a unit that starts off
/// (every position negative) still has a gradient that turns it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Layer,
    BeforeRelu,
    BeforeRelu6,
}

/// The normalisation a model applies to 0..1 pixels: `(p − mean) / std` per channel.
pub struct Normalise<'a> {
    pub mean: &'a [f32],
    pub std: &'a [f32],
}

/// The mean activation of `units[b]` for each image `b` of the layer output `act`
/// (`(B, K, …)`): a conv channel's spatial mean, a linear unit's value. `(B,)`.
fn unit_means(act: &Tensor, units: &[u32]) -> candle_core::Result<Tensor> {
    let b = act.dim(0)?;
    let k = act.dim(1)?;
    let flat = act.reshape((b, k, ()))?.mean(2)?;
    let idx = Tensor::from_vec(units.to_vec(), (b, 1), act.device())?;
    flat.gather(&idx, 1)?.squeeze(1)
}

/// Lucid's diversity term for `n` images of one unit at a layer: the mean over pairs of
/// the cosine similarity of their Gram matrices (channel × channel correlations over
/// positions), `Σ_{i≠j} ⟨Ĝ_i, Ĝ_j⟩ / n`.
fn similarity(act: &Tensor) -> candle_core::Result<Tensor> {
    let n = act.dim(0)?;
    let k = act.dim(1)?;
    let f = act.reshape((n, k, ()))?;
    let g = f.matmul(&f.t()?)?.reshape((n, k * k))?;
    let norm = g.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f32::MAX)?;
    let g = g.broadcast_div(&norm)?;
    let s = g.matmul(&g.t()?)?.sum_all()?;
    (s - n as f64)? / n as f64
}

/// Each image's random stream, independent of which other units share its batch.
fn stream(seed: u64, layer: &str, unit: usize, image: usize) -> ChaCha8Rng {
    let h = blake3::hash(format!("{layer}\0{unit}\0{image}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    ChaCha8Rng::seed_from_u64(seed ^ u64::from_le_bytes(b))
}

/// The per-image objective at `target` (see [`Follow`]) and the unit means after the layer.
fn objective(act: &Tensor, units: &[u32], follow: Follow) -> candle_core::Result<(Tensor, Tensor)> {
    let post = match follow {
        Follow::Layer => {
            let m = unit_means(act, units)?;
            return Ok((m.clone(), m));
        }
        Follow::BeforeRelu => act.relu()?,
        Follow::BeforeRelu6 => act.clamp(0f32, 6f32)?,
    };
    let post = unit_means(&post, units)?;
    let pre = unit_means(act, units)?;
    let off = post.eq(0f64)?.to_dtype(act.dtype())?;
    Ok(((&post + (pre * off)?)?, post))
}

/// Visualises `units` of `layer` together, as one batch. `channels` is the model's input
/// channels. The network runs up to `target` (`layer`, or the layer before it when
/// `follow` says so); the final objective is measured after `layer`. `on_step(step)` is
/// called after every step (progress).
#[allow(clippy::too_many_arguments)]
pub fn optimise(
    model: &dyn Model,
    norm: &Normalise,
    channels: usize,
    layer: &str,
    target: &str,
    follow: Follow,
    units: &[usize],
    s: &Settings,
    on_step: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Visualization>> {
    let per = s.images.max(1);
    let b = units.len() * per;
    let (c, n) = (channels, s.size);
    let plane = n * n;
    if norm.mean.len() != c || norm.std.len() != c {
        return Err(Error::msg(format!(
            "the input normalisation has {} means and {} stds for {c} channels",
            norm.mean.len(),
            norm.std.len()
        )));
    }
    let mut rngs: Vec<ChaCha8Rng> = units
        .iter()
        .flat_map(|&u| (0..per).map(move |i| stream(s.seed, layer, u, i)))
        .collect();
    // One parameter set per image, so that each starts from its own stream.
    let mut params: Vec<param::Image> = rngs
        .iter_mut()
        .map(|r| param::Image::new(s.kind, 1, c, n, n, s.decorrelate, 0.01, s.offset, r))
        .collect();
    let mut adams: Vec<param::Adam> = params.iter().map(|p| param::Adam::new(s.lr, p.values.len())).collect();
    let unit_idx: Vec<u32> = units.iter().flat_map(|&u| std::iter::repeat_n(u as u32, per)).collect();
    let sign_t = Tensor::from_vec(vec![if s.negative { -1f32 } else { 1.0 }; b], b, &Device::Cpu)?;
    let mut curves = vec![Vec::with_capacity(s.steps); units.len()];
    let mut pixels = vec![Vec::new(); b];
    let mut x = vec![0f32; b * c * plane];
    for step in 0..s.steps {
        let warps: Vec<transform::Warp> = rngs.iter_mut().map(|r| s.transforms.draw(n, n, r)).collect();
        for i in 0..b {
            pixels[i] = params[i].pixels();
            let xi = &mut x[i * c * plane..(i + 1) * c * plane];
            warps[i].apply(&pixels[i], xi);
            for ch in 0..c {
                xi[ch * plane..(ch + 1) * plane]
                    .iter_mut()
                    .for_each(|v| *v = (*v - norm.mean[ch]) / norm.std[ch]);
            }
        }
        let input = Var::from_tensor(&Tensor::from_slice(&x, (b, c, n, n), &Device::Cpu)?)?;
        let act = forward_to(model, input.as_tensor(), target, &mut Tap::default())
            .map_err(|e| Error::msg(format!("feature visualization of `{target}`: {e}")))?;
        let (obj, means) = objective(&act, &unit_idx, follow)?;
        let mut score = (&obj * &sign_t)?.sum_all()?;
        if per > 1 && s.diversity > 0.0 {
            for g in 0..units.len() {
                let sim = similarity(&act.narrow(0, g * per, per)?)?;
                score = (score - (sim * s.diversity as f64)?)?;
            }
        }
        let grads = score.backward()?;
        let gx = match grads.get(input.as_tensor()) {
            Some(g) => g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0f32; x.len()],
        };
        let m = means.to_vec1::<f32>()?;
        for (g, curve) in curves.iter_mut().enumerate() {
            curve.push(m[g * per..(g + 1) * per].iter().sum::<f32>() / per as f32);
        }
        for i in 0..b {
            let mut gp = vec![0f32; c * plane];
            let gi = &gx[i * c * plane..(i + 1) * c * plane];
            // Through the normalisation, then the warp's adjoint.
            let scaled: Vec<f32> = gi
                .chunks(plane)
                .enumerate()
                .flat_map(|(ch, g)| g.iter().map(move |v| v / norm.std[ch]))
                .collect();
            warps[i].adjoint(&scaled, &mut gp);
            if s.l2 > 0.0 {
                let k = 2.0 * s.l2 / (c * plane) as f32;
                gp.iter_mut().zip(&pixels[i]).for_each(|(g, p)| *g -= k * p);
            }
            let gv = params[i].backward(&pixels[i], &gp);
            adams[i].step(&mut params[i].values, &gv);
        }
        on_step(step);
    }
    // The final images, untransformed, and what they drive.
    let finals: Vec<Vec<f32>> = params.iter().map(|p| p.pixels()).collect();
    for (i, f) in finals.iter().enumerate() {
        let xi = &mut x[i * c * plane..(i + 1) * c * plane];
        for ch in 0..c {
            for (o, p) in xi[ch * plane..(ch + 1) * plane]
                .iter_mut()
                .zip(&f[ch * plane..(ch + 1) * plane])
            {
                *o = (p - norm.mean[ch]) / norm.std[ch];
            }
        }
    }
    let act = forward_to(
        model,
        &Tensor::from_slice(&x, (b, c, n, n), &Device::Cpu)?,
        target,
        &mut Tap::default(),
    )?;
    let fin = objective(&act, &unit_idx, follow)?.1.to_vec1::<f32>()?;
    let mut finals = finals.into_iter();
    Ok(units
        .iter()
        .enumerate()
        .map(|(g, &unit)| Visualization {
            unit,
            images: finals.by_ref().take(per).collect(),
            objective: fin[g * per..(g + 1) * per].to_vec(),
            curve: std::mem::take(&mut curves[g]),
        })
        .collect())
}
