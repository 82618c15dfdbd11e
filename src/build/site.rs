//! A site, loaded and validated: what `check` verifies and `build` renders. Loading reads
//! everything and writes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use image::DynamicImage;
use rayon::prelude::*;

use crate::build::featurevis::{self, FvJob};
use crate::build::units::ModelUnits;
use crate::cache;
use crate::config::{self, Config};
use crate::content::{self, Content};
use crate::data::dataset;
use crate::data::image as img;
use crate::error::Result;
use crate::methods::ModelInfo;
use crate::metrics::randomisation;
use crate::models::{self, LoadedModel};
use crate::render::templates::{self, Theme};
use crate::train::{read_log, TrainLog};

pub struct Site {
    pub config: Config,
    /// Parallel to `config.models`.
    pub models: Vec<LoadedModel>,
    pub training: Vec<Option<TrainLog>>,
    /// Parallel to `config.images`, decoded.
    pub images: Vec<DynamicImage>,
    pub content: Content,
    pub theme: Theme,
    /// Parallel to `config.models`: the unit analyses' layers and dataset, when configured.
    pub units: Vec<Option<ModelUnits>>,
    /// Parallel to `config.models`: the feature visualizations' layer entries, resolved.
    pub featurevis: Vec<Option<Vec<FvJob>>>,
    /// blake3 of the inputs: cache keys and provenance.
    pub hashes: Hashes,
    pub timings: Vec<(String, Duration)>,
    /// `--base-url`: where the site will be published, for the sitemap and canonical links
    /// (pages keep relative links).
    pub base_url: Option<String>,
}

/// What `Site::load_with` keeps.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Keep notes marked `draft: true` (`--drafts`).
    pub drafts: bool,
}

/// blake3 of every input file, in config order.
#[derive(Debug, Clone)]
pub struct Hashes {
    pub config: String,
    pub weights: Vec<String>,
    pub classes: Vec<String>,
    pub images: Vec<String>,
}

/// Runs one phase and records how long it took.
pub(crate) fn timed<T>(timings: &mut Vec<(String, Duration)>, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let out = f()?;
    timings.push((name.to_string(), t.elapsed()));
    Ok(out)
}

impl Site {
    /// Reads and checks everything: config, weights against their architectures, images,
    /// training logs, notes and theme. Writes nothing.
    pub fn load(config_path: &Path) -> Result<Site> {
        Site::load_with(config_path, &LoadOptions::default())
    }

    /// [`Site::load`], keeping drafts when asked.
    pub fn load_with(config_path: &Path, opts: &LoadOptions) -> Result<Site> {
        let mut timings = Vec::new();
        let config = timed(&mut timings, "config", || config::load(config_path))?;
        let models = timed(&mut timings, "weights", || load_weights(&config))?;
        check_methods(&config, &models)?;
        check_playgrounds(&config, &models)?;
        let training = config
            .models
            .iter()
            .map(|m| m.training_log.as_deref().map(read_log).transpose())
            .collect::<Result<Vec<_>>>()?;
        let images = timed(&mut timings, "images", || {
            config
                .images
                .par_iter()
                .map(|i| img::load(&i.path))
                .collect::<Result<Vec<_>>>()
        })?;
        let units = timed(&mut timings, "datasets", || load_units(&config, &models))?;
        let featurevis = (0..config.models.len())
            .map(|mi| featurevis::resolve(&config, mi, &models[mi]))
            .collect::<Result<Vec<_>>>()?;
        let hashes = timed(&mut timings, "hashes", || hash_inputs(&config))?;
        let mut content = timed(&mut timings, "notes", || content::load(&config))?;
        if !opts.drafts {
            content.drop_drafts();
        }
        let theme_dir = config.root.join("themes").join(&config.site.theme);
        if config.site.theme != "default" && !theme_dir.is_dir() {
            return Err(config.error(
                "site.theme",
                format!("theme folder `{}` not found", theme_dir.display()),
            ));
        }
        let theme = timed(&mut timings, "theme", || templates::load(Some(&theme_dir)))?;
        check_languages(&config, &content, &theme)?;
        let site = Site {
            config,
            models,
            training,
            images,
            content,
            theme,
            units,
            featurevis,
            hashes,
            timings,
            base_url: None,
        };
        super::figures::check(&site)?;
        Ok(site)
    }

    /// The cache folder a build uses by default: `.cnnscope-cache` next to the config.
    pub fn default_cache_dir(&self) -> std::path::PathBuf {
        self.config.root.join(cache::DEFAULT_DIR)
    }
}

/// The site's language and every note's have words in the theme's translation table.
fn check_languages(config: &Config, content: &Content, theme: &Theme) -> Result<()> {
    let known = || theme.words.keys().cloned().collect::<Vec<_>>().join(", ");
    let table = theme.words_origin.display();
    if !theme.words.contains_key(&config.site.language) {
        return Err(config.error(
            "site.language",
            format!(
                "`{}` has no words in the theme's translation table {table} (it has {})",
                config.site.language,
                known()
            ),
        ));
    }
    for t in &content.translations {
        if !theme.words.contains_key(&t.lang) {
            let note = t
                .intro
                .iter()
                .chain(&t.notes)
                .next()
                .map(|n| n.source.clone())
                .unwrap_or_default();
            return Err(crate::error::Error::at(
                note,
                format!(
                    "is in language `{}`, which the theme's translation table {table} has no words for (it has {}); \
                     add a `{}:` table to translations.yaml in the site's theme folder",
                    t.lang,
                    known(),
                    t.lang
                ),
            ));
        }
    }
    Ok(())
}

/// Every model's weights, checked against its architecture; an error is located at the
/// config key that names the file.
fn load_weights(config: &Config) -> Result<Vec<LoadedModel>> {
    config
        .models
        .par_iter()
        .enumerate()
        .map(|(i, m)| {
            models::load(m.arch, &m.weights, &m.input.spec(), m.classes.len())
                .map_err(|e| config.error(&format!("models[{i}].weights"), e))
        })
        .collect()
}

/// Method parameters and metric checkpoints that depend on the loaded model (a Grad-CAM
/// layer, an occlusion window), located at their key.
fn check_methods(config: &Config, models: &[LoadedModel]) -> Result<()> {
    for (mi, mc) in config.models.iter().enumerate() {
        let info = ModelInfo {
            arch: mc.arch,
            input: &mc.input,
            layers: models[mi].model.layers(),
        };
        for (k, m) in mc.methods.iter().enumerate() {
            if let Err(e) = m.validate(&info) {
                let key = format!("{}[{k}].{}", mc.methods_key, e.param);
                return Err(config.error(&key, format!("{} (model `{}`)", e.msg, mc.id)));
            }
        }
        if mc.metrics.randomisation.is_some() {
            let checkpoints = crate::build::explain::checkpoints_of(mc, info.layers);
            let modules = randomisation::modules(&mc.arch.expected_tensors(&mc.input.spec(), mc.classes.len()));
            if let Err((i, msg)) = randomisation::check_checkpoints(&checkpoints, &modules) {
                let key = format!("{}.randomisation.checkpoints[{i}]", mc.metrics_key);
                return Err(config.error(&key, format!("{msg} (model `{}`)", mc.id)));
            }
        }
    }
    Ok(())
}

/// Whether a model gets the draw-a-digit playground: a 28×28 grey input, an architecture
/// that is a plain chain ([`models::Model::chain`]), and `playground` not `false`.
pub fn has_playground(mc: &config::ModelConfig, lm: &LoadedModel) -> bool {
    mc.playground != Some(false) && can_have_playground(mc, lm)
}

fn can_have_playground(mc: &config::ModelConfig, lm: &LoadedModel) -> bool {
    let i = &mc.input;
    i.height == 28 && i.width == 28 && i.channels == 1 && lm.model.chain().is_some()
}

fn check_playgrounds(config: &Config, models: &[LoadedModel]) -> Result<()> {
    for (mi, mc) in config.models.iter().enumerate() {
        if mc.playground == Some(true) && !can_have_playground(mc, &models[mi]) {
            let i = &mc.input;
            let why = if (i.height, i.width, i.channels) != (28, 28, 1) {
                format!(
                    "it needs a 28×28 grey input, and this one is {}×{} with {} channel(s)",
                    i.height, i.width, i.channels
                )
            } else {
                format!(
                    "architecture `{}` does not run in the browser (only plain chains of convolutions, ReLUs, max-pools and linear layers do: lenet5)",
                    mc.arch.id
                )
            };
            return Err(config.error(
                &format!("models[{mi}].playground"),
                format!("model `{}` cannot have a playground: {why}", mc.id),
            ));
        }
    }
    Ok(())
}

fn hash_inputs(config: &Config) -> Result<Hashes> {
    let files = |paths: Vec<&Path>| paths.into_par_iter().map(cache::hash_file).collect::<Result<Vec<_>>>();
    Ok(Hashes {
        config: cache::hash_bytes(config.text.as_bytes()),
        weights: files(config.models.iter().map(|m| m.weights.as_path()).collect())?,
        classes: files(config.models.iter().map(|m| m.classes_path.as_path()).collect())?,
        images: files(config.images.iter().map(|i| i.path.as_path()).collect())?,
    })
}

/// The layers a model's units are analysed at when `units.layers` is left out.
pub fn preset_unit_layers(mc: &config::ModelConfig, layers: &[models::LayerInfo]) -> Vec<String> {
    if !mc.arch.unit_layers.is_empty() {
        return mc.arch.unit_layers.iter().map(|s| s.to_string()).collect();
    }
    let mut out = vec![mc.arch.gradcam_layer.to_string()];
    if let Some(pooled) = layers.len().checked_sub(2).map(|i| &layers[i]) {
        if pooled.name != out[0] {
            out.push(pooled.name.clone());
        }
    }
    out
}

/// Reads the datasets the models' unit analyses use and checks every layer they name.
fn load_units(config: &Config, models: &[LoadedModel]) -> Result<Vec<Option<ModelUnits>>> {
    // Every dataset is read, used or not, so that `check` finds its errors.
    let all: Vec<usize> = (0..config.datasets.len()).collect();
    let loaded = all
        .par_iter()
        .map(|&d| dataset::load(&config.datasets[d], config).map(|ds| (d, ds)))
        .collect::<Result<Vec<_>>>()?;
    config
        .models
        .iter()
        .enumerate()
        .map(|(mi, mc)| {
            let Some(u) = &mc.units else { return Ok(None) };
            let layers = models[mi].model.layers();
            let known = |name: &str, key: &str| -> Result<()> {
                if layers.iter().any(|l| l.name == name) {
                    return Ok(());
                }
                let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                Err(config.error(
                    key,
                    format!("model `{}` has no layer `{name}` (its layers: {})", mc.id, names.join(", ")),
                ))
            };
            let unit_layers = match &u.layers {
                Some(l) => {
                    for (i, name) in l.iter().enumerate() {
                        known(name, &format!("{}.layers[{i}]", u.key))?;
                    }
                    l.clone()
                }
                None => preset_unit_layers(mc, layers),
            };
            let ds = &loaded.iter().find(|(d, _)| *d == u.dataset).expect("loaded above").1;
            let dcfg = &config.datasets[u.dataset];
            let prepared = dataset::prepare(ds, dcfg, mc, config, &format!("{}.dataset", u.key))?;
            if let Some(e) = &u.embedding {
                for (i, name) in e.layers.iter().enumerate() {
                    known(name, &format!("{}.embedding.layers[{i}]", u.key))?;
                }
                // t-SNE looks at 3 × perplexity neighbours of every example.
                let most = (ds.len().saturating_sub(1)) as f64 / 3.0;
                if e.perplexity >= most {
                    return Err(config.error(
                        &format!("{}.embedding.perplexity", u.key),
                        format!(
                            "{} is too large for the {} examples of dataset `{}`: it must be below {most:.1} (a third of the examples less one)",
                            e.perplexity,
                            ds.len(),
                            dcfg.id
                        ),
                    ));
                }
            }
            if let Some(d) = &u.directions {
                known(&d.layer, &format!("{}.directions.layer", u.key))?;
                if prepared.labels.is_none() {
                    return Err(config.error(
                        &format!("{}.directions", u.key),
                        format!(
                            "the directions' class purity and ablation need labels, and dataset `{}` has none",
                            dcfg.id
                        ),
                    ));
                }
            }
            Ok(Some(ModelUnits {
                config: u.clone(),
                layers: unit_layers,
                prepared,
                dataset_hash: ds.hash.clone(),
                sources: ds.sources.clone(),
            }))
        })
        .collect()
}
