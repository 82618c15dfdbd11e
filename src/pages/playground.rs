//! The draw-a-digit playground of a model with a 28×28 grey input: a canvas, the drawing
//! prepared as MNIST digits are, and the model's forward and backward pass in the browser
//! (`static/playground.js`). The network travels as `net.js` beside the page: the steps of
//! [`crate::models::Model::chain`] and the weights as base64 float32, in a script rather
//! than a file to fetch, so the page also works from `file://`.

use std::path::Path;

use base64::Engine;
use serde::Serialize;
use serde_json::json;

use super::{model_link, render, Base, Input, ModelLink};
use crate::build::output::mkdir;
use crate::build::site::has_playground;
use crate::error::{Error, IoContext, Result};
use crate::models::{ChainOp, LoadedModel};
use crate::plan;

/// The brush width on the 280-pixel canvas: about 2 of the 28 pixels, as MNIST's strokes.
pub const BRUSH: usize = 22;
pub const CANVAS: usize = 280;

#[derive(Serialize)]
pub struct PlaygroundView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub canvas: usize,
    pub layers: Vec<String>,
    pub mean: String,
    pub std: String,
}

/// The `net.js` of a model: its steps, input, normalisation, classes and weights.
pub fn net_js(lm: &LoadedModel, mean: f32, std: f32, classes: &[String]) -> Result<String> {
    let chain = lm
        .model
        .chain()
        .ok_or_else(|| Error::msg(format!("{} is not a chain", lm.model.arch())))?;
    let mut weights: Vec<f32> = Vec::new();
    let mut take = |name: &str| -> Result<[usize; 2]> {
        let t = lm
            .tensors
            .get(name)
            .ok_or_else(|| Error::msg(format!("the playground needs tensor `{name}`, which the weights lack")))?;
        let v = t.flatten_all()?.to_vec1::<f32>()?;
        let at = [weights.len(), v.len()];
        weights.extend(v);
        Ok(at)
    };
    let mut steps = Vec::new();
    for s in &chain {
        let step = match &s.op {
            ChainOp::Conv {
                weight,
                bias,
                out,
                kernel,
                pad,
                stride,
            } => json!({"layer": s.layer, "op": "conv", "out": out, "kernel": kernel, "pad": pad, "stride": stride,
                "weight": take(weight)?, "bias": bias.as_deref().map(&mut take).transpose()?}),
            ChainOp::Relu => json!({"layer": s.layer, "op": "relu"}),
            ChainOp::MaxPool { kernel, stride } => {
                json!({"layer": s.layer, "op": "maxpool", "kernel": kernel, "stride": stride})
            }
            ChainOp::Linear { weight, bias, out } => json!({"layer": s.layer, "op": "linear", "out": out,
                "weight": take(weight)?, "bias": bias.as_deref().map(&mut take).transpose()?}),
        };
        steps.push(step);
    }
    let bytes: Vec<u8> = weights.iter().flat_map(|v| v.to_le_bytes()).collect();
    let spec = json!({
        "input": [1, 28, 28],
        "mean": [mean],
        "std": [std],
        "classes": classes,
        "brush": BRUSH,
        "steps": steps,
        "weights": base64::engine::general_purpose::STANDARD.encode(bytes),
    });
    Ok(format!(
        "// The network of this playground, written by cnnscope: steps, input and weights (float32, base64).\n(typeof window !== 'undefined' ? window : globalThis).CNNSCOPE_PLAYGROUND = {spec};\n"
    ))
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    let mut pages = 0;
    for (mi, mc) in site.config.models.iter().enumerate() {
        let lm = &site.models[mi];
        if !has_playground(mc, lm) {
            continue;
        }
        let page = plan::playground_page(&mc.id);
        let js = net_js(lm, mc.input.mean[0], mc.input.std[0], &mc.classes)?;
        let dir = out.join(&page);
        mkdir(&dir)?;
        let p = dir.join("net.js");
        std::fs::write(&p, js).at_path(&p)?;
        let view = PlaygroundView {
            base: Base::new(site, &page, &format!("{} · playground", mc.id)),
            model: model_link(&mc.id),
            canvas: CANVAS,
            layers: lm
                .model
                .chain()
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.layer)
                .collect(),
            mean: mc.input.mean[0].to_string(),
            std: mc.input.std[0].to_string(),
        };
        render(site, out, &page, "playground.html", &view)?;
        pages += 1;
    }
    Ok(pages)
}
