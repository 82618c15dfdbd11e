//! The t-SNE embedding of a layer's features over the dataset: points coloured by class
//! with a legend, the same points as thumbnails, and the embedding's 10-NN accuracy.

use std::path::Path;

use serde::Serialize;

use super::{model_link, render, Base, Input, ModelLink};
use crate::build::units::{EmbeddingData, UnitsResult, KNN};
use crate::error::Result;
use crate::plan;
use crate::render::plot::scatter_chart;

#[derive(Serialize)]
pub struct EmbeddingView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelLink,
    pub layer: String,
    pub layer_href: Option<String>,
    pub dataset: String,
    pub examples: usize,
    pub dim: usize,
    pub perplexity: String,
    pub seed: u64,
    pub knn: Option<String>,
    pub k: usize,
    /// What the colours are: the labels, or (unlabelled data) nothing.
    pub labelled: bool,
    pub scatter: String,
    pub thumbs_png: String,
    pub others: Vec<OtherEmbedding>,
}

#[derive(Serialize)]
pub struct OtherEmbedding {
    pub layer: String,
    pub href: String,
    pub knn: Option<String>,
    pub dim: usize,
}

fn knn_str(v: Option<f64>) -> Option<String> {
    v.map(|a| format!("{:.1}%", 100.0 * a))
}

/// The embedding's points coloured by true class (one colour when unlabelled).
pub fn scatter(site: &crate::build::site::Site, model: usize, e: &EmbeddingData) -> Result<String> {
    let mc = &site.config.models[model];
    let mu = site.units[model].as_ref().expect("a model with results has units");
    let colours: Vec<usize> = match &mu.prepared.labels {
        Some(l) => l.clone(),
        None => vec![0; e.points.len() / 2],
    };
    let by = if mu.prepared.labels.is_some() {
        ", by true class"
    } else {
        ""
    };
    scatter_chart(
        &format!("t-SNE of {} ({} dimensions){by}", e.layer, e.dim),
        &e.points,
        &colours,
        &mc.classes,
    )
}

fn view(input: &Input, u: &UnitsResult, e: &EmbeddingData) -> Result<EmbeddingView> {
    let site = input.site;
    let mc = &site.config.models[u.model];
    let mu = site.units[u.model].as_ref().expect("a model with results has units");
    let page = plan::embedding_page(&mc.id, &e.layer);
    let n = e.points.len() / 2;
    let scatter = scatter(site, u.model, e)?;
    Ok(EmbeddingView {
        base: Base::new(site, &page, &format!("{} · {} · t-SNE", mc.id, e.layer)),
        model: model_link(&mc.id),
        layer: e.layer.clone(),
        layer_href: u
            .layers
            .iter()
            .any(|l| l.layer == e.layer)
            .then(|| plan::href(&plan::layer_page(&mc.id, &e.layer))),
        dataset: site.config.datasets[mu.config.dataset].id.clone(),
        examples: n,
        dim: e.dim,
        perplexity: format!("{}", e.perplexity),
        seed: e.seed,
        knn: knn_str(e.knn_accuracy),
        k: KNN,
        labelled: mu.prepared.labels.is_some(),
        scatter,
        thumbs_png: e.thumbs_png.clone(),
        others: u
            .embeddings
            .iter()
            .filter(|o| o.layer != e.layer)
            .map(|o| OtherEmbedding {
                layer: o.layer.clone(),
                href: plan::href(&plan::embedding_page(&mc.id, &o.layer)),
                knn: knn_str(o.knn_accuracy),
                dim: o.dim,
            })
            .collect(),
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let mut pages = 0;
    for u in input.units {
        let mc = &input.site.config.models[u.model];
        for e in &u.embeddings {
            render(
                input.site,
                out,
                &plan::embedding_page(&mc.id, &e.layer),
                "embedding.html",
                &view(input, u, e)?,
            )?;
            pages += 1;
        }
    }
    Ok(pages)
}
