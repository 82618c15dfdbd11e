//! `gallery.yaml`: the schema, parsing, and validation.
//!
//! Parsing is typed (serde, unknown keys refused); validation then checks what types cannot:
//! ids, references between entries, that files exist and fit their model. Every error
//! names the config file and the key, and the line where it can be found.

mod check;
mod datasets;
mod featurevis;
mod images;
mod locate;
mod methods;
mod metrics;
mod models;
mod schema;
mod site;
mod targets;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use crate::error::{read_to_string, Error, Result};
use crate::methods::MethodSpec;
use crate::models::Architecture;
pub use crate::models::Input;
pub use datasets::{
    dataset_files, DatasetConfig, DatasetSource, DirectionsConfig, EmbeddingConfig, UnitsConfig, DEFAULT_TOP,
    PURITY_TOP,
};
pub use featurevis::{FeatureVisConfig, FvLayer, UnitSelection, MAX_ALL};
pub use locate::Locations;
pub use schema::{LabelRef, RawConfig};

/// The validated configuration, with paths resolved against the config's folder.
#[derive(Debug)]
pub struct Config {
    /// The config file itself.
    pub path: PathBuf,
    /// The folder paths are relative to (the site root).
    pub root: PathBuf,
    pub site: Site,
    pub models: Vec<ModelConfig>,
    pub images: Vec<ImageConfig>,
    pub datasets: Vec<DatasetConfig>,
    /// The config's text (its hash keys the cache).
    pub text: String,
    /// The line of every key, for errors found later (`models[1].weights`).
    pub locations: Locations,
}

impl Config {
    /// The line of `key` (a path such as `models[1].methods[0].layer`), or of the nearest
    /// enclosing key present.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.locations.line(key)
    }

    /// An error at `key`: `gallery.yaml:LINE: key: msg`.
    pub fn error(&self, key: &str, msg: impl Display) -> Error {
        error_at(&self.path, &self.locations, key, msg)
    }
}

/// An error at `key` of the config at `path`, located by `locations`.
fn error_at(path: &Path, locations: &Locations, key: &str, msg: impl Display) -> Error {
    Error::at_line(path, locations.line(key), format!("{key}: {msg}"))
}

/// A class to explain, per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    /// The class with the highest score.
    Predicted,
    /// The class with the second highest score.
    RunnerUp,
    /// The image's true class (skipped for images without a label).
    Label,
    /// A fixed class index.
    Class(usize),
}

impl TargetSpec {
    pub fn defaults() -> Vec<TargetSpec> {
        vec![TargetSpec::Predicted, TargetSpec::RunnerUp, TargetSpec::Label]
    }
}

#[derive(Debug, Clone)]
pub struct Site {
    pub title: String,
    pub description: String,
    /// Folder under `themes/` whose files override the built-in templates.
    pub theme: String,
    /// Paths may lead outside the site root.
    pub allow_outside_root: bool,
    /// Raw HTML in notes is stripped.
    pub safe_html: bool,
    /// The language of the generated pages and of notes without a language suffix.
    pub language: String,
}

#[derive(Debug)]
pub struct ModelConfig {
    pub id: String,
    pub arch: &'static Architecture,
    pub weights: PathBuf,
    pub classes_path: PathBuf,
    pub classes: Vec<String>,
    pub input: Input,
    pub training_log: Option<PathBuf>,
    pub description: String,
    pub methods: Vec<MethodSpec>,
    /// Per method, its own `targets:` when given: it explains only those of the model's
    /// targets that this list also picks.
    pub method_targets: Vec<Option<Vec<TargetSpec>>>,
    /// Where the methods were listed: `methods` or `models[i].methods`.
    pub methods_key: String,
    pub targets: Vec<TargetSpec>,
    /// Faithfulness metrics (`metrics` or `models[i].metrics`; off when absent).
    pub metrics: crate::metrics::Metrics,
    /// Where the metrics were given: `metrics` or `models[i].metrics`.
    pub metrics_key: String,
    /// Unit analyses over a dataset (`models[i].units`; off when absent).
    pub units: Option<UnitsConfig>,
    /// Feature visualizations (`models[i].feature_visualization`; off when absent).
    pub feature_visualization: Option<FeatureVisConfig>,
    /// `models[i].playground` as given: `None` means on where the model can have one.
    pub playground: Option<bool>,
}

#[derive(Debug)]
pub struct ImageConfig {
    pub id: String,
    pub path: PathBuf,
    pub label: Option<LabelRef>,
    pub caption: String,
    /// The ids of the models this image is shown with.
    pub models: Vec<String>,
}

impl ImageConfig {
    /// The label as a class index of `model`, when the image has one.
    pub fn label_index(&self, model: &ModelConfig) -> Option<usize> {
        match &self.label {
            None => None,
            Some(LabelRef::Index(i)) => Some(*i),
            Some(LabelRef::Name(n)) => model.classes.iter().position(|c| c == n),
        }
    }
}

/// Reads and validates a config file. Nothing is written.
pub fn load(path: &Path) -> Result<Config> {
    let text = read_to_string(path)?;
    parse(&text, path)
}

/// Parses and validates `text` as the config file at `path`; the files it names are looked
/// up (and read) relative to `path`'s folder. Nothing is written.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
        let mut msg = e.to_string();
        // YAML's own message for a tab in the indentation does not say "tab".
        let line = e.location().and_then(|l| text.lines().nth(l.line().saturating_sub(1)));
        if !msg.contains("tab") && line.is_some_and(|l| l[..l.len() - l.trim_start().len()].contains('\t')) {
            msg.push_str(" (this line is indented with a tab: YAML indents with spaces only)");
        }
        Error::at(path, msg)
    })?;
    let root = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    // Only text serde accepted is walked, and a walk that fails just leaves lines unknown.
    let locations = Locations::new(text);
    let err = |key: &str, msg: &str| error_at(path, &locations, key, msg);
    if raw.site.title.trim().is_empty() {
        return Err(err("site.title", "must not be empty"));
    }
    if raw.models.is_empty() {
        return Err(err("models", "at least one model is required"));
    }
    let mut check = check::Check::new(path, &root, raw.site.allow_outside_root, &locations)?;
    let site = site::validate(raw.site, &check)?;
    let datasets = datasets::validate(raw.datasets, &check)?;
    let models = models::validate(raw.models, raw.methods, raw.targets, raw.metrics, &datasets, &mut check)?;
    let images = images::validate(raw.images, &models, &mut check)?;
    Ok(Config {
        path: path.to_path_buf(),
        root,
        site,
        models,
        images,
        datasets,
        text: text.to_string(),
        locations,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::path::Path;

    #[test]
    fn tabs_in_the_indentation_are_named() {
        for text in [
            "site:\n\ttitle: x\nmodels: []\n",
            "site: { title: x }\nmodels:\n  - id: a\n\tarch: lenet5\n",
            "site: { title: x }\nmodels:\n\t- id: a\n",
        ] {
            let e = parse(text, Path::new("gallery.yaml")).unwrap_err().to_string();
            assert!(e.starts_with("gallery.yaml: ") && e.contains("tab"), "{text:?}: {e}");
        }
    }

    #[test]
    fn errors_found_after_parsing_name_the_line_of_their_key() {
        let e = parse("site:\n  title: ' '\nmodels: []\n", Path::new("gallery.yaml"));
        assert_eq!(
            e.unwrap_err().to_string(),
            "gallery.yaml:2: site.title: must not be empty"
        );
        let e = parse("site: { title: x }\n\nmodels: []\n", Path::new("gallery.yaml"));
        assert_eq!(
            e.unwrap_err().to_string(),
            "gallery.yaml:3: models: at least one model is required"
        );
    }
}
