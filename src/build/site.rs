//! A site, loaded and validated: what `check` verifies and `build` renders. Loading reads
//! everything and writes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use image::DynamicImage;
use rayon::prelude::*;

use crate::cache;
use crate::config::{self, Config};
use crate::content::{self, Content};
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
    /// blake3 of the inputs: cache keys and provenance.
    pub hashes: Hashes,
    pub timings: Vec<(String, Duration)>,
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
        let mut timings = Vec::new();
        let config = timed(&mut timings, "config", || config::load(config_path))?;
        let models = timed(&mut timings, "weights", || load_weights(&config))?;
        check_methods(&config, &models)?;
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
        let hashes = timed(&mut timings, "hashes", || hash_inputs(&config))?;
        let content = timed(&mut timings, "notes", || content::load(&config))?;
        let theme_dir = config.root.join("themes").join(&config.site.theme);
        if config.site.theme != "default" && !theme_dir.is_dir() {
            return Err(config.error(
                "site.theme",
                format!("theme folder `{}` not found", theme_dir.display()),
            ));
        }
        let theme = timed(&mut timings, "theme", || templates::load(Some(&theme_dir)))?;
        Ok(Site {
            config,
            models,
            training,
            images,
            content,
            theme,
            hashes,
            timings,
        })
    }

    /// The cache folder a build uses by default: `.cnnscope-cache` next to the config.
    pub fn default_cache_dir(&self) -> std::path::PathBuf {
        self.config.root.join(cache::DEFAULT_DIR)
    }
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
            let modules = randomisation::modules(&(mc.arch.tensors)(&mc.input.spec(), mc.classes.len()));
            if let Err((i, msg)) = randomisation::check_checkpoints(&checkpoints, &modules) {
                let key = format!("{}.randomisation.checkpoints[{i}]", mc.metrics_key);
                return Err(config.error(&key, format!("{msg} (model `{}`)", mc.id)));
            }
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
