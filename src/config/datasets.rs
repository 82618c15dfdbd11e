//! The `datasets` section, and each model's `units` section that names one. Files and
//! folders are checked here; reading the examples (and checking they fit each model) is
//! `Site::load`'s, and layer names are checked against the loaded models there too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::check::{valid_id, Check};
use super::schema::{RawDataset, RawUnits};
use crate::error::Result;

/// A dataset, its paths resolved.
#[derive(Debug, Clone)]
pub struct DatasetConfig {
    pub id: String,
    pub source: DatasetSource,
    pub offset: usize,
    pub limit: Option<usize>,
    /// `datasets[i]`, for errors found when its examples are read.
    pub key: String,
}

#[derive(Debug, Clone)]
pub enum DatasetSource {
    /// MNIST-style IDX files: images `[N, rows, cols]` and optional labels `[N]`.
    Idx { images: PathBuf, labels: Option<PathBuf> },
    /// Every PNG and JPEG under a folder, in path order; labelled by sub-folder name when
    /// every image is in a sub-folder.
    Folder { dir: PathBuf },
}

/// Per-layer defaults of the unit analyses.
pub const DEFAULT_TOP: usize = 9;
/// The examples a unit's or direction's class purity is measured over.
pub const PURITY_TOP: usize = 100;
pub const DEFAULT_PERPLEXITY: f64 = 30.0;

/// `models[i].units`, resolved.
#[derive(Debug, Clone)]
pub struct UnitsConfig {
    /// Index into `Config::datasets`.
    pub dataset: usize,
    /// `None`: the architecture's preset (resolved against the loaded model).
    pub layers: Option<Vec<String>>,
    pub top: usize,
    pub embedding: Option<EmbeddingConfig>,
    pub directions: Option<DirectionsConfig>,
    /// `models[i].units`.
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct EmbeddingConfig {
    pub layers: Vec<String>,
    pub perplexity: f64,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct DirectionsConfig {
    pub layer: String,
    /// `None`: as many as the layer has units.
    pub count: Option<usize>,
    pub seed: u64,
}

pub(super) fn validate(raw: Vec<RawDataset>, check: &Check) -> Result<Vec<DatasetConfig>> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, d) in raw.into_iter().enumerate() {
        let key = format!("datasets[{i}]");
        if !valid_id(&d.id) {
            return Err(check.err(
                &format!("{key}.id"),
                format!("`{}` is not a valid id: use [a-z0-9-]+", d.id),
            ));
        }
        if let Some(j) = seen.insert(d.id.clone(), i) {
            return Err(check.err(
                &format!("{key}.id"),
                format!("duplicate dataset id `{}` (also datasets[{j}])", d.id),
            ));
        }
        let source = match d.kind.as_str() {
            "idx" => DatasetSource::Idx {
                images: check.file(&format!("{key}.images"), &d.images)?,
                labels: match &d.labels {
                    Some(p) => Some(check.file(&format!("{key}.labels"), p)?),
                    None => None,
                },
            },
            "folder" => {
                if d.labels.is_some() {
                    return Err(check.err(
                        &format!("{key}.labels"),
                        "a folder dataset takes its labels from its sub-folders' names: remove `labels`",
                    ));
                }
                DatasetSource::Folder {
                    dir: check.dir(&format!("{key}.images"), &d.images)?,
                }
            }
            other => {
                return Err(check.err(
                    &format!("{key}.kind"),
                    format!("unknown dataset kind `{other}` (known: idx, folder)"),
                ))
            }
        };
        if d.limit == Some(0) {
            return Err(check.err(&format!("{key}.limit"), "must be at least 1"));
        }
        out.push(DatasetConfig {
            id: d.id,
            source,
            offset: d.offset.unwrap_or(0),
            limit: d.limit,
            key,
        });
    }
    Ok(out)
}

/// Checks a model's `units` section at `key` against the datasets.
pub(super) fn units(raw: &RawUnits, key: &str, datasets: &[DatasetConfig], check: &Check) -> Result<UnitsConfig> {
    let dataset = datasets.iter().position(|d| d.id == raw.dataset).ok_or_else(|| {
        let known: Vec<&str> = datasets.iter().map(|d| d.id.as_str()).collect();
        check.err(
            &format!("{key}.dataset"),
            if known.is_empty() {
                format!(
                    "unknown dataset `{}`: the config has no `datasets` section",
                    raw.dataset
                )
            } else {
                format!("unknown dataset `{}` (datasets: {})", raw.dataset, known.join(", "))
            },
        )
    })?;
    if let Some(l) = &raw.layers {
        if l.is_empty() {
            return Err(check.err(&format!("{key}.layers"), "lists no layer (leave it out for the preset)"));
        }
    }
    let top = raw.top.unwrap_or(DEFAULT_TOP);
    if !(1..=PURITY_TOP).contains(&top) {
        return Err(check.err(
            &format!("{key}.top"),
            format!("must be between 1 and {PURITY_TOP}, not {top}"),
        ));
    }
    let embedding = match &raw.embedding {
        None => None,
        Some(e) => {
            if e.layers.is_empty() {
                return Err(check.err(&format!("{key}.embedding.layers"), "lists no layer"));
            }
            let perplexity = e.perplexity.unwrap_or(DEFAULT_PERPLEXITY);
            if !(perplexity.is_finite() && perplexity >= 1.0) {
                return Err(check.err(
                    &format!("{key}.embedding.perplexity"),
                    format!("must be a number of at least 1, not {perplexity}"),
                ));
            }
            Some(EmbeddingConfig {
                layers: e.layers.clone(),
                perplexity,
                seed: e.seed.unwrap_or(0),
            })
        }
    };
    let directions = match &raw.directions {
        None => None,
        Some(d) => {
            if d.count == Some(0) {
                return Err(check.err(&format!("{key}.directions.count"), "must be at least 1"));
            }
            Some(DirectionsConfig {
                layer: d.layer.clone(),
                count: d.count,
                seed: d.seed.unwrap_or(0),
            })
        }
    };
    Ok(UnitsConfig {
        dataset,
        layers: raw.layers.clone(),
        top,
        embedding,
        directions,
        key: key.to_string(),
    })
}

/// The label files' and folders' paths, for hashing.
pub fn dataset_files(d: &DatasetConfig) -> Vec<&Path> {
    match &d.source {
        DatasetSource::Idx { images, labels } => std::iter::once(images.as_path()).chain(labels.as_deref()).collect(),
        DatasetSource::Folder { dir } => vec![dir.as_path()],
    }
}
