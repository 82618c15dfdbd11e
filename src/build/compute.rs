//! The compute units of a build, each through the cache: a model's weight pictures and a
//! pair's forward pass (its methods are in [`super::explain`]). Results are numbers, arrays
//! and file paths; nothing here knows how a page words them.

use std::path::Path;

use candle_core::{Tensor, D};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

use super::artifact::Artifact;
use super::explain::{self, Explained, PairInput};
use super::keys;
use super::output::mkdir;
use crate::cache::{Cache, ENTRY};
use crate::config::{ImageConfig, ModelConfig};
use crate::data::image as img;
use crate::error::{Error, Result};
use crate::models::{LoadedModel, Select, Tap};
use crate::plan::{self, Pair};
use crate::render::grid;
use crate::render::pictures::{layer_picture, weight_picture, LayerPicture, WeightPicture};

/// A model's weight pictures, as cached and as the pages get them.
#[derive(Serialize, Deserialize)]
pub struct ModelResult {
    /// One per layer with weights: filter grids for convs, matrices for linears.
    pub weights: Vec<WeightPicture>,
    pub artifacts: Vec<Artifact>,
}

/// A class and its probability.
#[derive(Debug, Clone, Serialize)]
pub struct ClassProb {
    pub index: usize,
    pub name: String,
    pub probability: f32,
}

/// What one model × image pair computed.
pub struct PairResult {
    pub pair: Pair,
    pub top5: Vec<ClassProb>,
    pub layers: Vec<LayerPicture>,
    /// The input as the model sees it, site-relative.
    pub input_png: String,
    pub artifacts: Vec<Artifact>,
    pub explained: Explained,
    /// Cache entries computed (not reused) for this pair.
    pub computed: usize,
}

/// A pair's forward pass, as cached: the class probabilities, the activation pictures, and
/// `input.png`, `input.npy`, `logits.npy` and `activations/` as files.
#[derive(Serialize, Deserialize)]
pub(crate) struct ForwardData {
    pub probs: Vec<f32>,
    layers: Vec<LayerPicture>,
    artifacts: Vec<Artifact>,
}

/// A model's weight pictures, from the cache or drawn; with a site folder, linked into it.
pub fn model_pictures(
    mc: &ModelConfig,
    lm: &LoadedModel,
    weights_hash: &str,
    out: Option<&Path>,
    cache: &Cache,
) -> Result<ModelResult> {
    let stored = cache
        .get_or_put("weight-pictures", &keys::weights(mc, weights_hash), |edir| {
            let mut weights = Vec::new();
            let mut artifacts = Vec::new();
            for layer in lm.model.layers() {
                let Some(wname) = &layer.weight else { continue };
                let Some(w) = lm.tensors.get(wname) else {
                    continue;
                };
                let Some(p) = weight_picture(w, layer, wname, &layer.name, edir)? else {
                    continue;
                };
                artifacts.push(Artifact {
                    kind: if p.conv { "filters" } else { "weights" }.to_string(),
                    png: Some(p.png.clone()),
                    npy: Some(p.npy.clone()),
                    shape: p.shape.clone(),
                    layer: Some(layer.name.clone()),
                    ..Default::default()
                });
                weights.push(p);
            }
            Ok(ModelResult { weights, artifacts })
        })
        .map_err(|e| e.context(format!("model `{}`: drawing the weights", mc.id)))?;
    let prefix = plan::weights_files(&mc.id);
    if let Some(out) = out {
        stored.link_into(out, &prefix)?;
    }
    let data: ModelResult = stored.placed(&prefix)?;
    let artifacts = data
        .artifacts
        .into_iter()
        .map(|a| a.complete(&stored, &prefix, &mc.id, None, &mc.classes))
        .collect();
    Ok(ModelResult {
        weights: data.weights,
        artifacts,
    })
}

/// Runs the forward pass of one pair and draws its input and activations into `edir`.
fn compute_forward(lm: &LoadedModel, x: &Tensor, shown: &DynamicImage, edir: &Path) -> Result<ForwardData> {
    let model = &lm.model;
    mkdir(&edir.join("activations"))?;
    let mut tap = Tap::new(Select::All, Select::None);
    let logits = model.forward(x, &mut tap)?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?
        .squeeze(0)?
        .to_vec1::<f32>()?;
    let art = |kind: &str, layer: Option<&str>, png: Option<String>, npy: &str, shape: Vec<usize>| Artifact {
        kind: kind.to_string(),
        layer: layer.map(str::to_string),
        png,
        npy: Some(format!("{ENTRY}{npy}")),
        shape,
        ..Default::default()
    };
    let mut artifacts = Vec::new();
    grid::save_dynamic_png(shown, &edir.join("input.png"))?;
    let x0 = x.squeeze(0)?;
    crate::data::npy::write(&x0, &edir.join("input.npy"))?;
    artifacts.push(art(
        "input",
        None,
        Some(format!("{ENTRY}input.png")),
        "input.npy",
        x0.dims().to_vec(),
    ));
    let l0 = logits.squeeze(0)?;
    crate::data::npy::write(&l0, &edir.join("logits.npy"))?;
    artifacts.push(art("logits", None, None, "logits.npy", l0.dims().to_vec()));
    let infos = model.layers();
    if infos.len() != tap.activations.len() {
        return Err(Error::msg(format!(
            "the forward pass kept {} activations but the architecture lists {} layers",
            tap.activations.len(),
            infos.len()
        )));
    }
    let mut layers = Vec::new();
    for (info, (name, act)) in infos.iter().zip(&tap.activations) {
        if &info.name != name {
            return Err(Error::msg(format!(
                "the forward pass produced layer `{name}` where the architecture lists `{}`",
                info.name
            )));
        }
        let base = format!("activations/{name}");
        if let Some(v) = layer_picture(&act.squeeze(0)?, info, &base, edir)? {
            artifacts.push(art(
                "activation",
                Some(name),
                Some(v.png.clone()),
                &format!("{base}.npy"),
                act.dims()[1..].to_vec(),
            ));
            layers.push(v);
        }
    }
    Ok(ForwardData {
        probs,
        layers,
        artifacts,
    })
}

/// The cached inputs of one pair.
pub struct PairSource<'a> {
    pub pair: Pair,
    pub mc: &'a ModelConfig,
    pub ic: &'a ImageConfig,
    pub model: &'a LoadedModel,
    pub image: &'a DynamicImage,
    pub weights_hash: &'a str,
    pub image_hash: &'a str,
    /// The model's randomised copies, when the metrics ask for the randomisation test.
    pub randomised: Option<&'a crate::metrics::randomisation::Randomised<'a>>,
}

impl PairSource<'_> {
    pub fn forward_key(&self) -> String {
        keys::forward(self.mc, self.weights_hash, self.image_hash)
    }
}

/// One pair: its forward pass and the `wanted` methods, from the cache or computed; with
/// a site folder, their files are linked into the pair's pages.
pub fn compute_pair(
    src: &PairSource,
    out: Option<&Path>,
    cache: &Cache,
    wanted: &[bool],
    randomise: bool,
) -> Result<PairResult> {
    let (mc, ic) = (src.mc, src.ic);
    let dir = plan::image_page(&mc.id, &ic.id);
    let context = || format!("model `{}` × image `{}`", mc.id, ic.id);
    let (shown, x) = img::prepare(src.image, &mc.input).map_err(|e| e.context(context()))?;
    let fkey = src.forward_key();
    let stored = cache
        .get_or_put("forward", &fkey, |edir| compute_forward(src.model, &x, &shown, edir))
        .map_err(|e| e.context(format!("{}: forward pass", context())))?;
    let mut computed = usize::from(stored.fresh);
    if let Some(out) = out {
        stored.link_into(out, &dir)?;
    }
    let data: ForwardData = stored.placed(&dir)?;
    let probs = data.probs;
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let top5 = order
        .iter()
        .take(5)
        .map(|&i| ClassProb {
            index: i,
            name: mc.classes[i].clone(),
            probability: probs[i],
        })
        .collect();
    let mut artifacts: Vec<Artifact> = data
        .artifacts
        .into_iter()
        .map(|a| a.complete(&stored, &dir, &mc.id, Some(&ic.id), &mc.classes))
        .collect();
    let input = PairInput {
        mc,
        ic,
        model: src.model,
        x: &x,
        shown: &shown,
        probs: &probs,
        fkey: &fkey,
        randomised: src.randomised,
    };
    let explained = explain::explain(&input, cache, wanted, randomise, out)?;
    computed += explained.computed;
    artifacts.extend(explained.artifacts.iter().cloned());
    Ok(PairResult {
        pair: src.pair,
        top5,
        layers: data.layers,
        input_png: format!("{dir}/input.png"),
        artifacts,
        explained,
        computed,
    })
}
