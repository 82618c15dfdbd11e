//! A model's page: the architecture, its filters and weights, the training log, links to
//! the method pages and the images.

use std::path::Path;

use serde::Serialize;

use super::pictures::{weight_view, WeightView};
use super::{pair_link, pct, render, shape_str, Base, Input, PairLink};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::methods;
use crate::plan;
use crate::render::markdown::to_html;
use crate::render::plot::line_chart;
use crate::train::TrainLog;

#[derive(Serialize)]
pub struct ModelView {
    #[serde(flatten)]
    pub base: Base,
    pub model: ModelInfo,
    pub training: Option<TrainingView>,
    pub methods: Vec<MethodLink>,
    pub images: Vec<PairLink>,
    /// The methods ranked by the faithfulness metrics, when they ran.
    pub leaderboard: Option<String>,
    /// The draw-a-digit playground, when the model has one.
    pub playground: Option<String>,
    pub units: Option<UnitsLinks>,
    /// The feature-visualization page and a few pictures, when configured.
    pub featurevis: Option<FvLinks>,
}

#[derive(Serialize)]
pub struct FvLinks {
    pub href: String,
    pub units: usize,
    pub layers: Vec<String>,
    pub preview: Vec<super::featurevis::FvCell>,
    pub pixelated: bool,
}

/// The model's unit analyses, as its page links them.
#[derive(Serialize)]
pub struct UnitsLinks {
    pub dataset: String,
    pub examples: usize,
    pub accuracy: Option<String>,
    pub layers: Vec<UnitLayerLink>,
    pub embeddings: Vec<EmbeddingLink>,
    pub directions: Option<EmbeddingLink>,
}

#[derive(Serialize)]
pub struct UnitLayerLink {
    pub name: String,
    pub href: String,
    pub units: usize,
    pub dead: usize,
}

#[derive(Serialize)]
pub struct EmbeddingLink {
    pub layer: String,
    pub href: String,
    pub figure: Option<String>,
}

fn units_links(input: &Input, mi: usize) -> Option<UnitsLinks> {
    let u = input.units_of(mi)?;
    let site = input.site;
    let mc = &site.config.models[mi];
    let mu = site.units[mi].as_ref()?;
    Some(UnitsLinks {
        dataset: site.config.datasets[mu.config.dataset].id.clone(),
        examples: mu.prepared.len(),
        accuracy: u.accuracy.map(|a| format!("{:.1}%", 100.0 * a)),
        layers: u
            .layers
            .iter()
            .map(|l| UnitLayerLink {
                name: l.layer.clone(),
                href: plan::href(&plan::layer_page(&mc.id, &l.layer)),
                units: l.units.len(),
                dead: l.dead,
            })
            .collect(),
        embeddings: u
            .embeddings
            .iter()
            .map(|e| EmbeddingLink {
                layer: e.layer.clone(),
                href: plan::href(&plan::embedding_page(&mc.id, &e.layer)),
                figure: e.knn_accuracy.map(|a| format!("10-NN accuracy {:.1}%", 100.0 * a)),
            })
            .collect(),
        directions: u.directions.as_ref().map(|d| EmbeddingLink {
            layer: d.layer.clone(),
            href: plan::href(&plan::directions_page(&mc.id, &d.layer)),
            figure: None,
        }),
    })
}

#[derive(Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub arch: &'static str,
    pub summary: &'static str,
    pub description: String,
    pub parameters: usize,
    pub layers: Vec<LayerRow>,
    pub weights: Vec<WeightView>,
    /// `C×H×W`.
    pub input: String,
    pub mean: Vec<String>,
    pub std: Vec<String>,
    pub classes: usize,
    /// Every class name, in index order (the page lists them, so search finds them).
    pub class_names: Vec<String>,
}

#[derive(Serialize)]
pub struct LayerRow {
    /// The layer's unit page, when its units are analysed.
    pub href: Option<String>,
    pub name: String,
    pub kind: &'static str,
    pub shape: String,
    pub parameters: usize,
}

#[derive(Serialize)]
pub struct MethodLink {
    pub title: &'static str,
    pub href: String,
}

#[derive(Serialize)]
pub struct TrainingView {
    pub loss_svg: String,
    pub accuracy_svg: String,
    pub classes: Vec<String>,
    pub confusion: Vec<ConfusionRow>,
    pub accuracy: String,
    pub epochs: usize,
    pub train_digits: String,
    pub test_digits: String,
    pub seed: u64,
    pub optimizer: String,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub normalisation: String,
    pub table: Vec<EpochRow>,
}

#[derive(Serialize)]
pub struct ConfusionRow {
    pub name: String,
    pub cells: Vec<ConfusionCell>,
    pub total: usize,
    pub recall: String,
}

#[derive(Serialize)]
pub struct ConfusionCell {
    pub count: usize,
    pub diagonal: bool,
    /// The share of the true class, for the shade.
    pub share: String,
}

#[derive(Serialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: String,
    pub test_loss: String,
    pub train_accuracy: String,
    pub test_accuracy: String,
}

/// `C×H×W` of a model's input.
pub fn input_shape(mc: &ModelConfig) -> String {
    format!("{}×{}×{}", mc.input.channels, mc.input.height, mc.input.width)
}

fn training_view(mc: &ModelConfig, log: &TrainLog) -> Result<TrainingView> {
    let loss = line_chart(
        "Loss per epoch",
        "cross-entropy",
        &[
            ("training", log.epochs.iter().map(|e| e.train_loss).collect()),
            ("held-out", log.epochs.iter().map(|e| e.test_loss).collect()),
        ],
        None,
    )?;
    let acc = line_chart(
        "Accuracy per epoch",
        "accuracy (%)",
        &[
            (
                "training",
                log.epochs.iter().map(|e| 100.0 * e.train_accuracy).collect(),
            ),
            ("held-out", log.epochs.iter().map(|e| 100.0 * e.test_accuracy).collect()),
        ],
        None,
    )?;
    let names: Vec<String> = (0..log.confusion.len())
        .map(|i| mc.classes.get(i).cloned().unwrap_or_else(|| "?".into()))
        .collect();
    let confusion = log
        .confusion
        .iter()
        .enumerate()
        .map(|(t, row)| {
            let total: usize = row.iter().sum();
            let cells = row
                .iter()
                .enumerate()
                .map(|(p, &n)| {
                    let share = if total > 0 { n as f64 / total as f64 } else { 0.0 };
                    ConfusionCell {
                        count: n,
                        diagonal: p == t,
                        share: format!("{share:.3}"),
                    }
                })
                .collect();
            ConfusionRow {
                name: names[t].clone(),
                cells,
                total,
                recall: if total > 0 {
                    pct(row[t] as f32 / total as f32)
                } else {
                    "–".into()
                },
            }
        })
        .collect();
    Ok(TrainingView {
        loss_svg: loss,
        accuracy_svg: acc,
        classes: names,
        confusion,
        accuracy: pct(log.test_accuracy as f32),
        epochs: log.epochs.len(),
        train_digits: example_range(&log.train_digits),
        test_digits: example_range(&log.test_digits),
        seed: log.seed,
        optimizer: log.optimizer.clone(),
        learning_rate: log.learning_rate,
        batch_size: log.batch_size,
        normalisation: log.normalisation.clone(),
        table: log
            .epochs
            .iter()
            .map(|e| EpochRow {
                epoch: e.epoch,
                train_loss: format!("{:.4}", e.train_loss),
                test_loss: format!("{:.4}", e.test_loss),
                train_accuracy: pct(e.train_accuracy as f32),
                test_accuracy: pct(e.test_accuracy as f32),
            })
            .collect(),
    })
}

/// A training log's `a..b` as words: which examples of the file, and how many (so that
/// "0..8000" does not read as digit values).
fn example_range(r: &str) -> String {
    match r
        .split_once("..")
        .map(|(a, b)| (a.trim().parse::<usize>(), b.trim().parse::<usize>()))
    {
        Some((Ok(a), Ok(b))) if b > a => format!(
            "the {} examples {}–{} of the file",
            super::thousands(b - a),
            super::thousands(a),
            super::thousands(b - 1)
        ),
        _ => r.to_string(),
    }
}

pub fn view(input: &Input, mi: usize) -> Result<ModelView> {
    let site = input.site;
    let mc = &site.config.models[mi];
    let layers = site.models[mi].model.layers();
    let page = plan::model_page(&mc.id);
    let slugs = methods::slugs(&mc.methods);
    Ok(ModelView {
        base: Base::new(site, &page, &format!("{} · {}", mc.id, site.config.site.title)),
        model: ModelInfo {
            id: mc.id.clone(),
            arch: mc.arch.id,
            summary: mc.arch.summary,
            description: to_html(&mc.description),
            parameters: layers.iter().map(|l| l.parameters).sum(),
            layers: layers
                .iter()
                .map(|l| LayerRow {
                    href: (input
                        .units_of(mi)
                        .is_some_and(|u| u.layers.iter().any(|x| x.layer == l.name))
                        || input
                            .featurevis_of(mi)
                            .is_some_and(|r| r.jobs.iter().any(|j| j.layer == l.name)))
                    .then(|| plan::href(&plan::layer_page(&mc.id, &l.name))),
                    name: l.name.clone(),
                    kind: l.kind.as_str(),
                    shape: shape_str(&l.output_shape),
                    parameters: l.parameters,
                })
                .collect(),
            weights: input.models[mi].weights.iter().map(weight_view).collect(),
            input: input_shape(mc),
            mean: mc.input.mean.iter().map(|v| v.to_string()).collect(),
            std: mc.input.std.iter().map(|v| v.to_string()).collect(),
            classes: mc.classes.len(),
            class_names: mc.classes.clone(),
        },
        training: site.training[mi]
            .as_ref()
            .map(|log| training_view(mc, log))
            .transpose()?,
        methods: mc
            .methods
            .iter()
            .zip(&slugs)
            .filter(|(m, _)| m.is_map())
            .map(|(m, s)| MethodLink {
                title: m.title(),
                href: plan::href(&plan::method_page(&mc.id, s)),
            })
            .collect(),
        images: input.pairs_of_model(mi).map(|r| pair_link(site, r)).collect(),
        leaderboard: super::leaderboard::scores(input, mi).map(|_| plan::href(&plan::leaderboard_page(&mc.id))),
        playground: crate::build::site::has_playground(mc, &site.models[mi])
            .then(|| plan::href(&plan::playground_page(&mc.id))),
        units: units_links(input, mi),
        featurevis: input.featurevis_of(mi).map(|r| FvLinks {
            href: plan::href(&plan::featurevis_page(&mc.id)),
            units: r.units.iter().map(Vec::len).sum(),
            layers: super::featurevis::layer_navs(r, mc, "")
                .into_iter()
                .map(|l| l.name)
                .collect(),
            preview: super::featurevis::preview(r, mc, 8),
            pixelated: r.jobs.iter().all(|j| j.settings.size <= 64),
        }),
    })
}

pub fn write(input: &Input, out: &Path) -> Result<usize> {
    let site = input.site;
    for (mi, mc) in site.config.models.iter().enumerate() {
        render(site, out, &plan::model_page(&mc.id), "model.html", &view(input, mi)?)?;
    }
    Ok(site.config.models.len())
}
