//! The typed shape of `gallery.yaml`, as written by users. Unknown keys are errors.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub site: RawSite,
    pub models: Vec<RawModel>,
    #[serde(default)]
    pub images: Vec<RawImage>,
    /// Methods for every model (default: all, with their defaults); each entry is read
    /// through the method registry (`config::methods`).
    pub methods: Option<Vec<serde_yaml::Value>>,
    /// Target classes for every model (default: predicted, runner-up, label).
    pub targets: Option<Vec<LabelRef>>,
    /// Faithfulness metrics for every model (default: none).
    pub metrics: Option<RawMetrics>,
    /// Datasets the models' unit analyses read.
    #[serde(default)]
    pub datasets: Vec<RawDataset>,
}

/// `datasets[i]`: images (and labels) a model's units are analysed over.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataset {
    pub id: String,
    /// `idx` (MNIST-style IDX files) or `folder` (a directory of images).
    pub kind: String,
    /// The IDX images file, or the folder.
    pub images: PathBuf,
    /// The IDX labels file (`idx` only; a folder's labels are its sub-folder names).
    pub labels: Option<PathBuf>,
    /// Examples skipped at the start.
    pub offset: Option<usize>,
    /// At most this many examples (after `offset`).
    pub limit: Option<usize>,
}

/// `models[i].units`: the dataset-level analyses of a model's units.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnits {
    /// A `datasets` id.
    pub dataset: String,
    /// Layers whose units get pages (default: the architecture's preset).
    pub layers: Option<Vec<String>>,
    /// Top examples shown per unit (default 9).
    pub top: Option<usize>,
    /// t-SNE embeddings of layers' features.
    pub embedding: Option<RawEmbedding>,
    /// Units against random directions of one layer: top examples, purity, ablation.
    pub directions: Option<RawDirections>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmbedding {
    pub layers: Vec<String>,
    pub perplexity: Option<f64>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirections {
    pub layer: String,
    /// How many random directions (default: as many as the layer has units).
    pub count: Option<usize>,
    pub seed: Option<u64>,
}

/// `metrics:`: each part is off unless present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub faithfulness: Option<RawFaithfulness>,
    pub randomisation: Option<RawRandomisation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFaithfulness {
    pub steps: Option<usize>,
    /// Method names of the model's list (default: every map method).
    pub methods: Option<Vec<String>>,
    /// Which of the model's targets get curves (default: all of them).
    pub targets: Option<Vec<LabelRef>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRandomisation {
    /// Method names of the model's list (default: its one-pass map methods).
    pub methods: Option<Vec<String>>,
    /// From the output down (default: the architecture's preset).
    pub checkpoints: Option<Vec<String>>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub title: String,
    pub description: Option<String>,
    pub theme: Option<String>,
    /// Lets `weights`, `classes`, `training_log`, image paths and notes lead outside the
    /// site root (the folder holding the config), through `..`, an absolute path or a
    /// symlink. Default false: such paths are refused.
    #[serde(default)]
    pub allow_outside_root: bool,
    /// Strips raw HTML from notes (ammonia). Default false: the author is trusted and raw
    /// HTML in notes is passed through.
    #[serde(default)]
    pub safe_html: bool,
    /// The language of the notes without a language in their file name and of every
    /// generated page (default `en`); `name.<lang>.md` notes are the other languages.
    pub language: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub id: String,
    pub arch: String,
    pub weights: PathBuf,
    pub classes: PathBuf,
    pub input: RawInput,
    pub training_log: Option<PathBuf>,
    pub description: Option<String>,
    /// Replaces the global `methods` for this model.
    pub methods: Option<Vec<serde_yaml::Value>>,
    /// Replaces the global `targets` for this model.
    pub targets: Option<Vec<LabelRef>>,
    /// Replaces the global `metrics` for this model.
    pub metrics: Option<RawMetrics>,
    /// Unit analyses over a dataset (default: none).
    pub units: Option<RawUnits>,
    /// Feature visualizations of chosen units (default: none).
    pub feature_visualization: Option<RawFeatureVis>,
    /// The draw-a-digit playground page (default: on for models that can have one).
    pub playground: Option<bool>,
}

/// `models[i].feature_visualization`: the settings for every listed layer, which each
/// layer entry may override. The settings are written out here and in [`RawFvLayer`]
/// because serde cannot deny unknown fields through a `flatten`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeatureVis {
    pub layers: Vec<RawFvLayer>,
    pub size: Option<usize>,
    pub steps: Option<usize>,
    pub lr: Option<f32>,
    pub seed: Option<u64>,
    pub parameterisation: Option<String>,
    pub decay: Option<f32>,
    pub decorrelate: Option<bool>,
    pub transforms: Option<serde_yaml::Value>,
    pub negative: Option<bool>,
    pub images: Option<usize>,
    pub diversity: Option<f32>,
    pub offset: Option<f32>,
    pub l2: Option<f32>,
}

/// `feature_visualization.layers[j]`: a layer, its units, and settings of its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFvLayer {
    pub layer: String,
    /// `all`, a unit, a range `"a-b"`, or a list of units and ranges.
    pub units: serde_yaml::Value,
    pub size: Option<usize>,
    pub steps: Option<usize>,
    pub lr: Option<f32>,
    pub seed: Option<u64>,
    pub parameterisation: Option<String>,
    pub decay: Option<f32>,
    pub decorrelate: Option<bool>,
    pub transforms: Option<serde_yaml::Value>,
    pub negative: Option<bool>,
    pub images: Option<usize>,
    pub diversity: Option<f32>,
    pub offset: Option<f32>,
    pub l2: Option<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInput {
    /// `[height, width]` in pixels.
    pub size: [usize; 2],
    pub channels: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub id: String,
    pub path: PathBuf,
    pub label: Option<LabelRef>,
    pub caption: Option<String>,
    pub models: Option<Vec<String>>,
}

/// A true class, given as an index into the model's classes or as a class name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LabelRef {
    Index(usize),
    Name(String),
}
