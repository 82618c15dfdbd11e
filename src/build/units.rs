//! The unit analyses of a model over its dataset, through the cache: one entry per
//! analysed layer (every unit's top examples, class means, selectivity, histogram and
//! pictures), one per embedding, one for the units against random directions. The
//! dataset's forward pass runs only when one of them is missing.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::artifact::Artifact;
use super::output::mkdir;
use crate::analysis::activations::{self, LayerActivations, Scores};
use crate::analysis::{directions as dir, embedding, units as stats};
use crate::cache::{Cache, KeyHasher, Stored, ENTRY};
use crate::config::{Config, ModelConfig, UnitsConfig, PURITY_TOP};
use crate::data::dataset::Prepared;
use crate::data::npy;
use crate::error::{Error, IoContext, Result};
use crate::models::{LayerInfo, LoadedModel};
use crate::plan;
use crate::render::colormap::Scale;
use crate::render::examples::{self as pics, Region};
use crate::render::grid;

/// Bins of a unit's activation histogram.
pub const HISTOGRAM_BINS: usize = 30;
/// The neighbours of the embeddings' accuracy.
pub const KNN: usize = 10;

/// A model's units as the build analyses them: the layers, resolved, and its dataset as
/// the model sees it.
pub struct ModelUnits {
    pub config: UnitsConfig,
    pub layers: Vec<String>,
    pub prepared: Prepared,
    /// blake3 of the dataset's examples and labels.
    pub dataset_hash: String,
    /// Where each example comes from (`file#index`, or a path under the folder).
    pub sources: Vec<String>,
}

/// One top example of a unit: its dataset index, its score, and for conv units the
/// position of the maximum and the input region it sees.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shown {
    pub index: usize,
    pub score: f32,
    #[serde(default)]
    pub position: Option<[usize; 2]>,
    #[serde(default)]
    pub region: Option<Region>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitStats {
    pub unit: usize,
    /// The best `PURITY_TOP` examples, best first.
    pub top: Vec<usize>,
    pub shown: Vec<Shown>,
    pub class_means: Option<Vec<Option<f64>>>,
    pub selectivity: Option<f64>,
    /// Class purity of the top `PURITY_TOP`.
    pub purity: Option<f64>,
    pub dead: bool,
    pub max: f32,
    pub mean: f64,
    pub histogram: stats::Histogram,
    pub top_png: String,
    pub context_png: Option<String>,
    pub thumb_png: String,
    /// The unit's own filter, for units of the network's first convolution.
    #[serde(default)]
    pub filter_png: Option<String>,
}

/// One analysed layer, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerUnits {
    pub layer: String,
    pub shape: Vec<usize>,
    pub examples: usize,
    pub units: Vec<UnitStats>,
    /// Units in the order of the class × unit matrix (clustered).
    pub order: Vec<usize>,
    pub dead: usize,
    /// Class × unit mean activations, each unit divided by its largest class mean.
    pub matrix_png: Option<String>,
    pub artifacts: Vec<Artifact>,
}

/// A t-SNE embedding, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingData {
    pub layer: String,
    pub dim: usize,
    pub perplexity: f64,
    pub seed: u64,
    /// `N × 2`, dataset order.
    pub points: Vec<f32>,
    pub knn_accuracy: Option<f64>,
    pub thumbs_png: String,
    pub artifacts: Vec<Artifact>,
}

/// Units against random directions of one layer, as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectionsData {
    pub layer: String,
    pub units: usize,
    pub count: usize,
    pub seed: u64,
    pub purity_units: Vec<Option<f64>>,
    pub purity_directions: Vec<f64>,
    /// Shown top examples of each unit and of each direction.
    pub top_units: Vec<Vec<usize>>,
    pub top_directions: Vec<Vec<usize>>,
    pub unit_pngs: Vec<String>,
    pub direction_pngs: Vec<String>,
    pub accuracy: f64,
    pub k: Vec<usize>,
    pub accuracy_units: Vec<f64>,
    pub accuracy_directions: Vec<f64>,
    /// The smallest and largest accuracy per k over the draws.
    pub range_units: Vec<[f64; 2]>,
    pub range_directions: Vec<[f64; 2]>,
    pub repeats: usize,
    pub artifacts: Vec<Artifact>,
}

/// What the pages get for a model with unit analyses.
pub struct UnitsResult {
    pub model: usize,
    /// Held-out accuracy over the dataset (when labelled).
    pub accuracy: Option<f64>,
    pub layers: Vec<LayerUnits>,
    pub embeddings: Vec<EmbeddingData>,
    pub directions: Option<DirectionsData>,
    pub artifacts: Vec<Artifact>,
    pub computed: usize,
}

fn base_key(kind: &str, mc: &ModelConfig, weights_hash: &str, mu: &ModelUnits) -> KeyHasher {
    let i = &mc.input;
    let input = json!({"height": i.height, "width": i.width, "channels": i.channels, "mean": i.mean, "std": i.std});
    KeyHasher::new(kind)
        .field("arch", mc.arch.id)
        .field("weights", weights_hash)
        .field("classes", mc.classes.len().to_string())
        .field("input", input.to_string())
        .field("dataset", &mu.dataset_hash)
}

fn layer_key(mc: &ModelConfig, weights_hash: &str, mu: &ModelUnits, layer: &str) -> String {
    base_key("units", mc, weights_hash, mu)
        .field("layer", layer)
        .field("top", mu.config.top.to_string())
        .finish()
}

fn embedding_key(
    mc: &ModelConfig,
    weights_hash: &str,
    mu: &ModelUnits,
    e: &crate::config::EmbeddingConfig,
    layer: &str,
) -> String {
    base_key("embedding", mc, weights_hash, mu)
        .field("layer", layer)
        .field("perplexity", e.perplexity.to_string())
        .field("seed", e.seed.to_string())
        .finish()
}

fn directions_key(
    mc: &ModelConfig,
    weights_hash: &str,
    mu: &ModelUnits,
    d: &crate::config::DirectionsConfig,
) -> String {
    base_key("directions", mc, weights_hash, mu)
        .field("layer", &d.layer)
        .field("count", format!("{:?}", d.count))
        .field("seed", d.seed.to_string())
        .field("top", mu.config.top.to_string())
        .finish()
}

/// Every cache key of a model's unit analyses (for `cache gc`).
pub fn keys(mc: &ModelConfig, weights_hash: &str, mu: &ModelUnits) -> Vec<String> {
    let mut out: Vec<String> = mu.layers.iter().map(|l| layer_key(mc, weights_hash, mu, l)).collect();
    if let Some(e) = &mu.config.embedding {
        out.extend(e.layers.iter().map(|l| embedding_key(mc, weights_hash, mu, e, l)));
    }
    if let Some(d) = &mu.config.directions {
        out.push(directions_key(mc, weights_hash, mu, d));
    }
    out
}

/// The examples' pictures as the unit entries draw them.
const CELL: u32 = 72;
const THUMB: u32 = 48;

fn cell_for(p: &Prepared) -> u32 {
    // Small inputs are enlarged to CELL; photographs shown at up to 112 px.
    if p.height.max(p.width) <= CELL as usize {
        CELL
    } else {
        112
    }
}

/// The region of input a conv unit's maximum sees, when the layer knows its field.
fn region_of(info: &LayerInfo, position: usize) -> Option<([usize; 2], Region)> {
    let w = *info.output_shape.get(2)?;
    let f = info.field?;
    let (y, x) = (position / w, position % w);
    let (y0, y1) = f.span(y);
    let (x0, x1) = f.span(x);
    Some(([y, x], Region { y0, y1, x0, x1 }))
}

fn save(img: &image::RgbImage, edir: &Path, rel: &str) -> Result<String> {
    let p = edir.join(rel);
    if let Some(d) = p.parent() {
        mkdir(d)?;
    }
    grid::save_png(img, &p)?;
    Ok(format!("{ENTRY}{rel}"))
}

/// The shown examples of a layer's unit `k` drawn: their crops (or whole inputs), the
/// inputs with the crop outlined, and a thumbnail of the best.
fn unit_pictures(p: &Prepared, shown: &[Shown], edir: &Path, k: usize) -> Result<(String, Option<String>, String)> {
    let cell = cell_for(p);
    let crops: Vec<image::RgbImage> = shown
        .iter()
        .map(|s| {
            let ex = pics::example(p, s.index);
            pics::fit(&s.region.map_or(ex.clone(), |r| pics::crop(&ex, r)), cell)
        })
        .collect();
    let top = save(&pics::grid(&crops, 3, cell), edir, &format!("units/{k}/top.png"))?;
    let context = if shown.iter().any(|s| s.region.is_some()) {
        let cells: Vec<image::RgbImage> = shown
            .iter()
            .map(|s| {
                let ex = pics::example(p, s.index);
                match s.region {
                    Some(r) => pics::outlined(&ex, r, cell),
                    None => pics::fit(&ex, cell),
                }
            })
            .collect();
        Some(save(
            &pics::grid(&cells, 3, cell),
            edir,
            &format!("units/{k}/context.png"),
        )?)
    } else {
        None
    };
    let thumb = save(&pics::fit(&crops[0], THUMB), edir, &format!("units/{k}/thumb.png"))?;
    Ok((top, context, thumb))
}

/// The whole inputs of `indices`, as a 3-column grid.
fn examples_grid(p: &Prepared, indices: &[usize], edir: &Path, rel: &str) -> Result<String> {
    let cell = cell_for(p);
    let cells: Vec<image::RgbImage> = indices.iter().map(|&i| pics::fit(&pics::example(p, i), cell)).collect();
    save(&pics::grid(&cells, 3, cell), edir, rel)
}

/// Everything about one layer's units.
fn analyse_layer(
    l: &LayerActivations,
    info: &LayerInfo,
    filters: Option<&candle_core::Tensor>,
    p: &Prepared,
    classes: usize,
    top_n: usize,
    edir: &Path,
) -> Result<LayerUnits> {
    let scores = Scores::of(l);
    // The first convolution's filters, on one symmetric scale, each about 60 px.
    let filters: Option<(Vec<f32>, Vec<usize>, Scale)> = match filters {
        Some(w) if w.dims().len() == 4 && w.dims()[0] == scores.units => {
            let v = crate::render::pictures::values(w)?;
            let scale = Scale::Diverging {
                abs: v.iter().fold(0f32, |a, b| a.max(b.abs())).max(1e-12),
            };
            Some((v, w.dims().to_vec(), scale))
        }
        _ => None,
    };
    let spatial = l.shape.len() > 1;
    let mut units = Vec::with_capacity(scores.units);
    let mut means_rows = Vec::new();
    let mut artifacts = Vec::new();
    for k in 0..scores.units {
        let col = scores.column(k);
        let top = stats::top(&col, PURITY_TOP.max(top_n).min(col.len()));
        let shown: Vec<Shown> = top[..top_n.min(top.len())]
            .iter()
            .map(|&i| {
                let at = scores.argmax[i * scores.units + k] as usize;
                let (position, region) = if spatial {
                    match region_of(info, at) {
                        Some((pos, r)) => (Some(pos), Some(r)),
                        None => (info.output_shape.get(2).map(|&w| [at / w, at % w]), None),
                    }
                } else {
                    (None, None)
                };
                Shown {
                    index: i,
                    score: col[i],
                    position,
                    region,
                }
            })
            .collect();
        let class_means = p.labels.as_ref().map(|ls| stats::class_means(&col, ls, classes));
        let selectivity = class_means.as_ref().map(|m| stats::selectivity(m));
        let dead = stats::is_dead(&col);
        let purity = match &p.labels {
            Some(ls) if !dead => Some(stats::purity(&top, ls, classes)),
            _ => None,
        };
        if let Some(m) = &class_means {
            let max = m.iter().flatten().copied().fold(0.0f64, f64::max);
            means_rows.push(
                m.iter()
                    .map(|v| if max > 0.0 { v.unwrap_or(0.0) / max } else { 0.0 })
                    .collect::<Vec<f64>>(),
            );
        }
        let hist = stats::histogram(&col, HISTOGRAM_BINS);
        let (top_png, context_png, thumb_png) = unit_pictures(p, &shown, edir, k)?;
        let filter_png = match &filters {
            Some((v, dims, scale)) => {
                let (c, h, w) = (dims[1], dims[2], dims[3]);
                let one = &v[k * c * h * w..(k + 1) * c * h * w];
                let img = grid::maps(one, c, h, w, c.min(8), grid::zoom_for(h, w, 60), scale);
                Some(save(&img, edir, &format!("units/{k}/filter.png"))?)
            }
            None => None,
        };
        artifacts.push(Artifact {
            kind: "unit".into(),
            layer: Some(l.name.clone()),
            unit: Some(k),
            top: Some(top.clone()),
            selectivity,
            class_means: class_means.clone(),
            png: Some(top_png.clone()),
            histogram: serde_json::to_value(&hist).ok(),
            ..Default::default()
        });
        units.push(UnitStats {
            unit: k,
            max: col.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            mean: col.iter().map(|&v| v as f64).sum::<f64>() / col.len().max(1) as f64,
            histogram: hist,
            top,
            shown,
            class_means,
            selectivity,
            purity,
            dead,
            top_png,
            context_png,
            thumb_png,
            filter_png,
        });
    }
    // Scores as an array: N × units.
    let npy_path = edir.join("scores.npy");
    std::fs::write(&npy_path, npy::encode(&[scores.len(), scores.units], &scores.score)).at_path(&npy_path)?;
    artifacts.push(Artifact {
        kind: "unit-scores".into(),
        layer: Some(l.name.clone()),
        npy: Some(format!("{ENTRY}scores.npy")),
        shape: vec![scores.len(), scores.units],
        ..Default::default()
    });
    let (order, matrix_png) = if means_rows.is_empty() {
        ((0..scores.units).collect(), None)
    } else {
        let order = stats::cluster_order(&means_rows);
        // Classes down, units across, in cluster order.
        let mut m = vec![0f32; classes * order.len()];
        for (c, &u) in order.iter().enumerate() {
            for cl in 0..classes {
                m[cl * order.len() + c] = means_rows[u][cl] as f32;
            }
        }
        let cw = (960 / order.len().max(1) as u32).clamp(3, 24);
        let img = pics::matrix(
            &m,
            classes,
            order.len(),
            cw,
            16,
            &Scale::Sequential { min: 0.0, max: 1.0 },
        );
        let png = save(&img, edir, "class-means.png")?;
        let flat: Vec<f32> = means_rows.iter().flatten().map(|&v| v as f32).collect();
        let p = edir.join("class-means.npy");
        std::fs::write(&p, npy::encode(&[means_rows.len(), classes], &flat)).at_path(&p)?;
        artifacts.push(Artifact {
            kind: "class-means".into(),
            layer: Some(l.name.clone()),
            png: Some(png.clone()),
            npy: Some(format!("{ENTRY}class-means.npy")),
            shape: vec![means_rows.len(), classes],
            ..Default::default()
        });
        (order, Some(png))
    };
    Ok(LayerUnits {
        layer: l.name.clone(),
        shape: l.shape.clone(),
        examples: scores.len(),
        dead: units.iter().filter(|u| u.dead).count(),
        units,
        order,
        matrix_png,
        artifacts,
    })
}

/// The analyses of model `mi`, from the cache or computed; with a site folder, linked in.
#[allow(clippy::too_many_arguments)]
pub fn compute_units(
    config: &Config,
    mi: usize,
    lm: &LoadedModel,
    mu: &ModelUnits,
    weights_hash: &str,
    out: Option<&Path>,
    cache: &Cache,
    log: &(dyn Fn(&str) + Sync),
) -> Result<UnitsResult> {
    let mc = &config.models[mi];
    let dataset_id = &config.datasets[mu.config.dataset].id;
    let p = &mu.prepared;
    let classes = mc.classes.len();
    let info = |name: &str| -> Result<&LayerInfo> {
        lm.model
            .layers()
            .iter()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::msg(format!("model `{}` has no layer `{name}`", mc.id)))
    };
    // Every layer any analysis reads, once.
    let mut wanted: Vec<String> = mu.layers.clone();
    for l in mu
        .config
        .embedding
        .iter()
        .flat_map(|e| &e.layers)
        .chain(mu.config.directions.as_ref().map(|d| &d.layer))
    {
        if !wanted.contains(l) {
            wanted.push(l.clone());
        }
    }
    let layer_keys: Vec<String> = mu.layers.iter().map(|l| layer_key(mc, weights_hash, mu, l)).collect();
    let embedding_keys: Vec<String> = mu
        .config
        .embedding
        .iter()
        .flat_map(|e| e.layers.iter().map(move |l| embedding_key(mc, weights_hash, mu, e, l)))
        .collect();
    let directions_key = mu
        .config
        .directions
        .as_ref()
        .map(|d| directions_key(mc, weights_hash, mu, d));
    let missing = |k: &String| cache.get(k).is_none();
    // Entries this build writes, so they count as computed when placed below.
    let fresh: std::collections::BTreeSet<String> = layer_keys
        .iter()
        .chain(&embedding_keys)
        .chain(directions_key.as_ref())
        .filter(|k| missing(k))
        .cloned()
        .collect();

    // The dataset's forward pass, only when an entry is missing.
    let forward = if !fresh.is_empty() {
        let started = std::time::Instant::now();
        let r = activations::collect(lm.model.as_ref(), &p.x, &wanted)
            .map_err(|e| e.context(format!("model `{}` over dataset `{dataset_id}`", mc.id)))?;
        log(&format!(
            "  units: {} over {} examples of `{dataset_id}` ({:.1} s)",
            mc.id,
            p.len(),
            started.elapsed().as_secs_f64()
        ));
        Some(r)
    } else {
        None
    };
    let acts = |name: &str| -> &LayerActivations {
        let (layers, _) = forward.as_ref().expect("run when an entry is missing");
        layers.iter().find(|l| l.name == name).expect("collected")
    };

    // t-SNE is serial (see `embedding::tsne`): each missing embedding gets a thread of its
    // own while the layers' and directions' entries use the thread pool.
    std::thread::scope(|scope| -> Result<()> {
        let mut threads = Vec::new();
        if let Some(e) = &mu.config.embedding {
            for (name, key) in e.layers.iter().zip(&embedding_keys).filter(|(_, k)| missing(k)) {
                let l = acts(name);
                threads.push(scope.spawn(move || embedding_entry(cache, key, l, p, e, &mc.id, log)));
            }
        }
        let mine = (|| -> Result<()> {
            use rayon::prelude::*;
            mu.layers
                .par_iter()
                .zip(&layer_keys)
                .filter(|(_, k)| missing(k))
                .map(|(name, key)| -> Result<()> {
                    let l = acts(name);
                    let inf = info(name)?;
                    let filters = first_filters(lm, name);
                    let started = std::time::Instant::now();
                    cache.put("units", key, |edir| {
                        analyse_layer(l, inf, filters, p, classes, mu.config.top, edir)
                    })?;
                    log(&format!(
                        "  units: {} {name} ({} units, {:.1} s)",
                        mc.id,
                        l.units(),
                        started.elapsed().as_secs_f64()
                    ));
                    Ok(())
                })
                .collect::<Result<Vec<()>>>()?;
            if let (Some(d), Some(key)) = (&mu.config.directions, &directions_key) {
                if missing(key) {
                    let labels = p
                        .labels
                        .as_ref()
                        .ok_or_else(|| Error::msg("directions need a labelled dataset"))?;
                    let (_, predictions) = forward.as_ref().expect("run when an entry is missing");
                    let started = std::time::Instant::now();
                    cache.put("directions", key, |edir| {
                        directions_entry(
                            lm,
                            acts(&d.layer),
                            p,
                            labels,
                            predictions,
                            classes,
                            d,
                            mu.config.top,
                            edir,
                        )
                    })?;
                    log(&format!(
                        "  directions: {} {} ({:.1} s)",
                        mc.id,
                        d.layer,
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            Ok(())
        })();
        for t in threads {
            t.join().map_err(|_| Error::msg("a t-SNE thread panicked"))??;
        }
        mine
    })?;

    // Every entry now exists: place them in order.
    let mut computed = 0;
    let mut artifacts = Vec::new();
    let mut place = |key: &str, prefix: &str| -> Result<Stored> {
        let mut stored = cache
            .get(key)
            .ok_or_else(|| Error::msg(format!("cache entry {key} unreadable right after writing it")))?;
        stored.fresh = fresh.contains(key);
        cache.record(&stored);
        computed += stored.fresh as usize;
        if let Some(out) = out {
            stored.link_into(out, prefix)?;
        }
        Ok(stored)
    };
    let mut complete = |stored: &Stored, prefix: &str, arts: &[Artifact]| {
        for a in arts {
            let mut a = a.clone().complete(stored, prefix, &mc.id, None, &mc.classes);
            a.dataset = Some(dataset_id.clone());
            artifacts.push(a);
        }
    };
    let mut layers = Vec::new();
    for (name, key) in mu.layers.iter().zip(&layer_keys) {
        let prefix = plan::layer_files(&mc.id, name);
        let stored = place(key, &prefix)?;
        let data: LayerUnits = stored.placed(&prefix)?;
        complete(&stored, &prefix, &data.artifacts);
        layers.push(data);
    }
    let mut embeddings = Vec::new();
    if let Some(e) = &mu.config.embedding {
        for (name, key) in e.layers.iter().zip(&embedding_keys) {
            let prefix = plan::embedding_page(&mc.id, name);
            let stored = place(key, &prefix)?;
            let data: EmbeddingData = stored.placed(&prefix)?;
            complete(&stored, &prefix, &data.artifacts);
            embeddings.push(data);
        }
    }
    let directions = match (&mu.config.directions, &directions_key) {
        (Some(d), Some(key)) => {
            let prefix = plan::directions_page(&mc.id, &d.layer);
            let stored = place(key, &prefix)?;
            let data: DirectionsData = stored.placed(&prefix)?;
            complete(&stored, &prefix, &data.artifacts);
            Some(data)
        }
        _ => None,
    };
    let accuracy = directions.as_ref().map(|d| d.accuracy).or_else(|| {
        let (_, pred) = forward.as_ref()?;
        p.labels.as_ref().map(|ls| dir::accuracy(pred, ls))
    });
    Ok(UnitsResult {
        model: mi,
        accuracy,
        layers,
        embeddings,
        directions,
        artifacts,
        computed,
    })
}

/// One layer's t-SNE entry: the points, their 10-NN accuracy, the thumbnail scatter.
fn embedding_entry(
    cache: &Cache,
    key: &str,
    l: &LayerActivations,
    p: &Prepared,
    e: &crate::config::EmbeddingConfig,
    model: &str,
    log: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    let name = &l.name;
    cache
        .put("embedding", key, |edir| {
            let started = std::time::Instant::now();
            let points = embedding::tsne(&l.values, l.len(), l.size(), e.perplexity, e.seed)?;
            let knn_accuracy = p.labels.as_ref().map(|ls| embedding::knn_accuracy(&points, ls, KNN));
            let npy_path = edir.join("tsne.npy");
            std::fs::write(&npy_path, npy::encode(&[l.len(), 2], &points)).at_path(&npy_path)?;
            let thumbs = pics::scatter(&points, &|i| pics::example(p, i), 960, 24);
            let thumbs_png = save(&thumbs, edir, "thumbnails.png")?;
            log(&format!(
                "  t-SNE: {model} {name} ({} × {}, {:.1} s)",
                l.len(),
                l.size(),
                started.elapsed().as_secs_f64()
            ));
            Ok(EmbeddingData {
                layer: name.clone(),
                dim: l.size(),
                perplexity: e.perplexity,
                seed: e.seed,
                points,
                knn_accuracy,
                thumbs_png: thumbs_png.clone(),
                artifacts: vec![Artifact {
                    kind: "tsne".into(),
                    layer: Some(name.clone()),
                    npy: Some(format!("{ENTRY}tsne.npy")),
                    png: Some(thumbs_png),
                    shape: vec![l.len(), 2],
                    knn_accuracy,
                    ..Default::default()
                }],
            })
        })
        .map(|_| ())
}

/// The weight of the network's first layer with weights, when it is a convolution and
/// `layer` comes before the next layer with weights: its units are those filters' outputs.
fn first_filters<'a>(lm: &'a LoadedModel, layer: &str) -> Option<&'a candle_core::Tensor> {
    let layers = lm.model.layers();
    let first = layers.iter().position(|l| l.weight.is_some())?;
    if layers[first].kind != crate::models::LayerKind::Conv {
        return None;
    }
    let at = layers.iter().position(|l| l.name == layer)?;
    let next = layers
        .iter()
        .skip(first + 1)
        .position(|l| l.weight.is_some())
        .map(|i| i + first + 1);
    if at < first || next.is_some_and(|n| at >= n) {
        return None;
    }
    lm.tensors.get(layers[first].weight.as_ref()?)
}

#[allow(clippy::too_many_arguments)]
fn directions_entry(
    lm: &LoadedModel,
    l: &LayerActivations,
    p: &Prepared,
    labels: &[usize],
    predictions: &[usize],
    classes: usize,
    d: &crate::config::DirectionsConfig,
    top_n: usize,
    edir: &Path,
) -> Result<DirectionsData> {
    let units = l.units();
    let count = d.count.unwrap_or(units);
    let dirs = dir::random_directions(units, count, d.seed);
    let scores = Scores::of(l);
    let projected = dir::project(l, &dirs);
    let column = |v: &[f32], k: usize, n: usize| -> Vec<f32> { (0..v.len() / n).map(|i| v[i * n + k]).collect() };
    let mut purity_units = Vec::new();
    let (mut top_units, mut unit_pngs) = (Vec::new(), Vec::new());
    for k in 0..units {
        let col = column(&scores.score, k, units);
        let top = stats::top(&col, PURITY_TOP.min(col.len()));
        purity_units.push((!stats::is_dead(&col)).then(|| stats::purity(&top, labels, classes)));
        let shown = top[..top_n.min(top.len())].to_vec();
        unit_pngs.push(examples_grid(p, &shown, edir, &format!("units/{k}.png"))?);
        top_units.push(shown);
    }
    let mut purity_directions = Vec::new();
    let (mut top_directions, mut direction_pngs) = (Vec::new(), Vec::new());
    for k in 0..count {
        let col = column(&projected, k, count);
        let top = stats::top(&col, PURITY_TOP.min(col.len()));
        purity_directions.push(stats::purity(&top, labels, classes));
        let shown = top[..top_n.min(top.len())].to_vec();
        direction_pngs.push(examples_grid(p, &shown, edir, &format!("directions/{k}.png"))?);
        top_directions.push(shown);
    }
    let npy_path = edir.join("directions.npy");
    std::fs::write(&npy_path, npy::encode(&[count, units], &dirs)).at_path(&npy_path)?;
    let k = dir::ablation_ks(units.min(count + 1));
    let (cu, cd) = dir::ablation(lm.model.as_ref(), &p.x, labels, l, &dirs, &k, d.seed)?;
    let (accuracy_units, accuracy_directions) = (cu.mean.clone(), cd.mean.clone());
    let range_units: Vec<[f64; 2]> = cu.min.iter().zip(&cu.max).map(|(&a, &b)| [a, b]).collect();
    let range_directions: Vec<[f64; 2]> = cd.min.iter().zip(&cd.max).map(|(&a, &b)| [a, b]).collect();
    let accuracy = dir::accuracy(predictions, labels);
    let artifacts = vec![
        Artifact {
            kind: "directions".into(),
            layer: Some(l.name.clone()),
            npy: Some(format!("{ENTRY}directions.npy")),
            shape: vec![count, units],
            purity_units: Some(purity_units.clone()),
            purity_directions: Some(purity_directions.clone()),
            ..Default::default()
        },
        Artifact {
            kind: "ablation".into(),
            layer: Some(l.name.clone()),
            k: Some(k.clone()),
            accuracy_units: Some(accuracy_units.clone()),
            accuracy_directions: Some(accuracy_directions.clone()),
            repeats: Some(dir::REPEATS),
            range_units: Some(range_units.clone()),
            range_directions: Some(range_directions.clone()),
            ..Default::default()
        },
    ];
    Ok(DirectionsData {
        layer: l.name.clone(),
        units,
        count,
        seed: d.seed,
        purity_units,
        purity_directions,
        top_units,
        top_directions,
        unit_pngs,
        direction_pngs,
        accuracy,
        k,
        accuracy_units,
        accuracy_directions,
        range_units,
        range_directions,
        repeats: dir::REPEATS,
        artifacts,
    })
}
