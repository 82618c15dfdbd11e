//! Loading a site (everything checked, nothing written) and building it into an output
//! folder. The build writes into a staging folder next to the output and swaps it in only
//! when everything succeeded, so a failed build leaves the previous site as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use candle_core::{Tensor, D};
use image::DynamicImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cache::{self, Cache, KeyHasher, Stored, ENTRY};
use crate::config::{self, Config, ImageConfig, ModelConfig};
use crate::content::{self, Content};
use crate::data::image as img;
use crate::error::{Error, IoContext, Result};
use crate::models::{self, LayerKind, LoadedModel, Select, Tap};
use crate::plan::{self, Pair, Shard, Unit};
use crate::render::colormap::Scale;
use crate::render::grid;
use crate::render::markdown::to_html;
use crate::render::plot::line_chart;
use crate::render::templates::{self, Theme};
use crate::train::{read_log, TrainLog};

/// A site, loaded and validated: what `check` verifies and `build` renders.
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

/// One file the build wrote from an array, as listed in `manifest.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: String,
    #[serde(default)]
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<ClassRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub layer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub png: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub npy: Option<String>,
    pub shape: Vec<usize>,
    /// The method's parameters as applied.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub params: Option<Value>,
    /// The attribution drawn over the input.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub overlay: Option<String>,
    /// Checks computed with the array (Integrated Gradients' completeness gap, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metrics: Option<std::collections::BTreeMap<String, f64>>,
    /// blake3 of the `.npy` file's bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub blake3: Option<String>,
    /// The cache entry that holds the files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entry: Option<String>,
}

impl Artifact {
    /// Fills in what a cache entry does not store: the ids, the class name, the hashes.
    pub(crate) fn complete(
        mut self,
        stored: &Stored,
        prefix: &str,
        model: &str,
        image: Option<&str>,
        classes: &[String],
    ) -> Artifact {
        self.model = model.to_string();
        self.image = image.map(str::to_string);
        if let Some(t) = &mut self.target {
            t.name = classes.get(t.index).cloned().unwrap_or_default();
        }
        self.blake3 = self.npy.as_deref().and_then(|n| stored.hash_of(prefix, n));
        self.entry = Some(stored.key.clone());
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassRef {
    pub index: usize,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassProb {
    pub index: usize,
    pub name: String,
    pub probability: f32,
}

/// How a build uses the cache and which part of the work it does.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The cache folder [default: `.cnnscope-cache` next to the config].
    pub cache: Option<PathBuf>,
    /// Reuse nothing and keep nothing: a temporary cache next to the output, removed after.
    pub no_cache: bool,
    /// Compute only this shard's units into the cache, and write no site.
    pub shard: Option<Shard>,
}

#[derive(Debug)]
pub struct BuildReport {
    /// The site folder (none for a shard).
    pub output: Option<PathBuf>,
    pub pages: usize,
    pub artifacts: usize,
    /// Cache entries (and their files) this build computed, and those it reused.
    pub computed: usize,
    pub reused: usize,
    pub files_computed: usize,
    pub files_reused: usize,
    /// The lasting cache folder (none with `--no-cache`).
    pub cache: Option<PathBuf>,
    pub timings: Vec<(String, Duration)>,
}

fn timed<T>(timings: &mut Vec<(String, Duration)>, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
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
        let models = timed(&mut timings, "weights", || {
            config
                .models
                .par_iter()
                .enumerate()
                .map(|(i, m)| {
                    // The weights file's own error, located at the config key that names it.
                    models::load(m.arch, &m.weights, &m.input.spec(), m.classes.len()).map_err(|e| {
                        Error::at_line(
                            &config.path,
                            config.line(&format!("models[{i}].weights")),
                            format!("models[{i}].weights: {e}"),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for (mi, mc) in config.models.iter().enumerate() {
            let layers = models[mi].model.layers();
            for (k, m) in mc.methods.iter().enumerate() {
                if let Err((param, msg)) = m.validate(mc.arch, &mc.input, layers) {
                    let key = format!("{}[{k}].{param}", mc.methods_key);
                    let line = config.line(&key);
                    return Err(Error::at_line(
                        &config.path,
                        line,
                        format!("{key}: {msg} (model `{}`)", mc.id),
                    ));
                }
            }
        }
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
        let hashes = timed(&mut timings, "hashes", || {
            let files = |paths: Vec<&Path>| paths.into_par_iter().map(cache::hash_file).collect::<Result<Vec<_>>>();
            Ok(Hashes {
                config: cache::hash_bytes(config.text.as_bytes()),
                weights: files(config.models.iter().map(|m| m.weights.as_path()).collect())?,
                classes: files(config.models.iter().map(|m| m.classes_path.as_path()).collect())?,
                images: files(config.images.iter().map(|i| i.path.as_path()).collect())?,
            })
        })?;
        let content = timed(&mut timings, "notes", || content::load(&config))?;
        let theme_dir = config.root.join("themes").join(&config.site.theme);
        if config.site.theme != "default" && !theme_dir.is_dir() {
            return Err(Error::at(
                &config.path,
                format!("site.theme: theme folder `{}` not found", theme_dir.display()),
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
    pub fn default_cache_dir(&self) -> PathBuf {
        self.config.root.join(cache::DEFAULT_DIR)
    }

    /// Builds the site into `output` with the default cache, replacing what was there only
    /// on success. `log` receives progress lines.
    pub fn build(&self, output: &Path, log: &(dyn Fn(&str) + Sync)) -> Result<BuildReport> {
        self.build_with(output, &BuildOptions::default(), log)
    }

    /// Builds with explicit cache and shard options. A shard computes its part of the work
    /// into the cache and leaves `output` alone.
    pub fn build_with(&self, output: &Path, opts: &BuildOptions, log: &(dyn Fn(&str) + Sync)) -> Result<BuildReport> {
        if let Some(shard) = opts.shard {
            if opts.no_cache {
                return Err(Error::msg(
                    "--shard computes into the cache for a later build to assemble: it cannot run with --no-cache",
                ));
            }
            let cache = Cache::open(&opts.cache.clone().unwrap_or_else(|| self.default_cache_dir()))?;
            return self.build_into(None, &cache, Some(shard), log);
        }
        let staging = prepare_output(output)?;
        let result = (|| {
            let cache = if opts.no_cache {
                // Next to the staging folder (same file system, so files are hard-linked),
                // and named after it, so a killed build's is removed with it.
                Cache::temporary(&PathBuf::from(format!("{}.cache", staging.display())))?
            } else {
                Cache::open(&opts.cache.clone().unwrap_or_else(|| self.default_cache_dir()))?
            };
            let mut report = self.build_into(Some(&staging), &cache, None, log)?;
            swap_in(&staging, output)?;
            report.output = Some(output.to_path_buf());
            Ok(report)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    /// Computes what is missing from the cache (only `shard`'s units, if given) and, with a
    /// site folder, links every entry into it and writes the pages and the manifest.
    fn build_into(
        &self,
        out: Option<&Path>,
        cache: &Cache,
        shard: Option<Shard>,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<BuildReport> {
        let mut timings = Vec::new();
        let plan = plan::plan(&self.config);
        let units = plan::units(&self.config, &plan);
        let position: std::collections::HashMap<Unit, usize> = units.iter().enumerate().map(|(i, u)| (*u, i)).collect();
        let owned = |u: Unit| shard.is_none_or(|s| position.get(&u).is_some_and(|&i| s.owns(i)));
        let done = AtomicUsize::new(0);
        let total = plan.pairs.len();
        let model_views = timed(&mut timings, "model pictures", || {
            (0..self.models.len())
                .into_par_iter()
                .filter(|&model| owned(Unit::Weights { model }))
                .map(|mi| self.model_pictures(mi, out, cache))
                .collect::<Result<Vec<_>>>()
        })?;
        let pair_views = timed(&mut timings, "forward passes and pictures", || {
            plan.pairs
                .par_iter()
                .enumerate()
                .filter_map(|(pair, p)| {
                    let methods: Vec<bool> = (0..self.config.models[p.model].methods.len())
                        .map(|method| owned(Unit::Method { pair, method }))
                        .collect();
                    (owned(Unit::Forward { pair }) || methods.iter().any(|&m| m)).then_some((*p, methods))
                })
                .map(|(p, wanted)| {
                    let started = Instant::now();
                    let v = self.compute_pair(p, out, cache, &wanted)?;
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let computed: Vec<String> = v
                        .explained
                        .timings
                        .iter()
                        .filter(|(_, t)| t.is_some())
                        .map(|(m, t)| format!("{m} {:.1}s", t.unwrap_or_default()))
                        .collect();
                    let what = if v.computed == 0 {
                        ": all reused from the cache".to_string()
                    } else if computed.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", computed.join(", "))
                    };
                    log(&format!(
                        "  [{n}/{total}] {} × {} ({:.1} s{what})",
                        self.config.models[p.model].id,
                        self.config.images[p.image].id,
                        started.elapsed().as_secs_f64(),
                    ));
                    Ok(v)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let c = &cache.counts;
        let mut report = BuildReport {
            output: None,
            pages: 0,
            artifacts: 0,
            computed: c.entries_computed.load(Ordering::Relaxed),
            reused: c.entries_reused.load(Ordering::Relaxed),
            files_computed: c.files_computed.load(Ordering::Relaxed),
            files_reused: c.files_reused.load(Ordering::Relaxed),
            cache: (!cache.is_temporary()).then(|| cache.root().to_path_buf()),
            timings: Vec::new(),
        };
        if let Some(out) = out {
            report.pages = timed(&mut timings, "pages", || {
                self.write_pages(out, &plan.pairs, &model_views, &pair_views)
            })?;
            let mut artifacts: Vec<Artifact> = model_views.iter().flat_map(|m| m.artifacts.clone()).collect();
            artifacts.extend(pair_views.iter().flat_map(|p| p.artifacts.clone()));
            timed(&mut timings, "manifest", || {
                self.write_manifest(out, &model_views, &pair_views, &artifacts)
            })?;
            report.artifacts = artifacts.len();
        }
        report.timings = timings;
        Ok(report)
    }

    /// Every cache key the current config refers to, for `cache gc`. Method entries are
    /// found through their pair's forward entry (which says the targets); a pair whose
    /// forward entry is missing contributes only that key.
    pub fn referenced_keys(&self, cache: &Cache) -> Result<std::collections::BTreeSet<String>> {
        let mut keys = std::collections::BTreeSet::new();
        for mi in 0..self.models.len() {
            keys.insert(self.weights_key(mi));
        }
        for p in plan::plan(&self.config).pairs {
            let fkey = self.forward_key(p);
            if let Some(stored) = cache.get(&fkey) {
                let data: ForwardData = stored.placed("")?;
                keys.extend(crate::explain::method_keys(self, p, &fkey, &data.probs));
            }
            keys.insert(fkey);
        }
        Ok(keys)
    }

    fn weights_key(&self, mi: usize) -> String {
        let mc = &self.config.models[mi];
        KeyHasher::new("weight-pictures")
            .field("arch", mc.arch.id)
            .field("weights", &self.hashes.weights[mi])
            .finish()
    }

    /// The forward pass of a pair depends on the weights, the image and how it is prepared.
    pub(crate) fn forward_key(&self, p: Pair) -> String {
        let mc = &self.config.models[p.model];
        let i = &mc.input;
        let input = json!({"height": i.height, "width": i.width, "channels": i.channels, "mean": i.mean, "std": i.std});
        KeyHasher::new("forward")
            .field("arch", mc.arch.id)
            .field("weights", &self.hashes.weights[p.model])
            .field("classes", mc.classes.len().to_string())
            .field("input", input.to_string())
            .field("image", &self.hashes.images[p.image])
            .finish()
    }
}

/// The folder the build writes into: a fresh sibling of `output`.
fn prepare_output(output: &Path) -> Result<PathBuf> {
    if output.exists() {
        if !output.is_dir() {
            return Err(Error::at(output, "the output exists and is not a folder"));
        }
        let empty = std::fs::read_dir(output).at_path(output)?.next().is_none();
        if !empty && !output.join("manifest.json").is_file() {
            return Err(Error::at(
                output,
                "the output folder is not empty and holds no cnnscope site (no manifest.json): \
                 choose another --output or empty it, since a build replaces the whole folder",
            ));
        }
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).at_path(&parent)?;
    let name = output.file_name().and_then(|n| n.to_str()).unwrap_or("public");
    remove_abandoned_staging(&parent, name);
    let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).at_path(&staging)?;
    }
    std::fs::create_dir_all(&staging).at_path(&staging)?;
    Ok(staging)
}

/// Removes staging folders (and `--no-cache` temporary caches) of builds of the same output
/// that were killed: their process is gone.
fn remove_abandoned_staging(parent: &Path, name: &str) {
    let prefix = format!(".{name}.staging-");
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('.').next().unwrap_or_default();
        let alive = cfg!(not(target_os = "linux")) || Path::new("/proc").join(pid).exists();
        if !alive && pid.parse::<u32>().is_ok() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn swap_in(staging: &Path, output: &Path) -> Result<()> {
    if output.exists() {
        let old = staging.with_extension("old");
        if old.exists() {
            // Left by a build that was killed between the two renames below.
            std::fs::remove_dir_all(&old).at_path(&old)?;
        }
        std::fs::rename(output, &old).at_path(output)?;
        std::fs::rename(staging, output).at_path(output)?;
        std::fs::remove_dir_all(&old).at_path(&old)?;
    } else {
        std::fs::rename(staging, output).at_path(output)?;
    }
    Ok(())
}

pub(crate) fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).at_path(p)
}

pub(crate) fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    crate::data::npy::write(t, path)
}

pub(crate) fn shape_str(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
}

/// Pictures of one model's parameters.
struct ModelView {
    /// One entry per layer with weights: filter grids for convs, matrices for linears.
    weights: Vec<Value>,
    artifacts: Vec<Artifact>,
}

/// What one model × image pair computed.
struct PairView {
    top5: Vec<ClassProb>,
    layers: Vec<Value>,
    input_png: String,
    artifacts: Vec<Artifact>,
    explained: crate::explain::Explained,
    /// Cache entries computed (not reused) for this pair.
    computed: usize,
}

/// A model's weight pictures, as cached.
#[derive(Serialize, Deserialize)]
struct WeightsData {
    weights: Vec<Value>,
    artifacts: Vec<Artifact>,
}

/// A pair's forward pass, as cached: the class probabilities, the activation pictures, and
/// `input.png`, `input.npy`, `logits.npy` and `activations/` as files.
#[derive(Serialize, Deserialize)]
pub(crate) struct ForwardData {
    pub probs: Vec<f32>,
    layers: Vec<Value>,
    artifacts: Vec<Artifact>,
}

impl Site {
    fn model_pictures(&self, mi: usize, out: Option<&Path>, cache: &Cache) -> Result<ModelView> {
        let mc = &self.config.models[mi];
        let lm = &self.models[mi];
        let stored = cache.get_or_put("weight-pictures", &self.weights_key(mi), |edir| {
            let mut weights = Vec::new();
            let mut artifacts = Vec::new();
            for layer in lm.model.layers() {
                let Some(wname) = &layer.weight else { continue };
                let Some(w) = lm.tensors.get(wname) else {
                    continue;
                };
                let Some((view, art)) = weight_picture(w, layer, wname, &layer.name, edir)? else {
                    continue;
                };
                weights.push(view);
                artifacts.push(art);
            }
            Ok(WeightsData { weights, artifacts })
        })?;
        let prefix = format!("{}/weights", plan::model_dir(&mc.id));
        if let Some(out) = out {
            stored.link_into(out, &prefix)?;
        }
        let data: WeightsData = stored.placed(&prefix)?;
        let artifacts = data
            .artifacts
            .into_iter()
            .map(|a| a.complete(&stored, &prefix, &mc.id, None, &mc.classes))
            .collect();
        Ok(ModelView {
            weights: data.weights,
            artifacts,
        })
    }

    /// Runs the forward pass of one pair and draws its input and activations into `edir`.
    fn compute_forward(&self, p: Pair, x: &Tensor, shown: &DynamicImage, edir: &Path) -> Result<ForwardData> {
        let model = &self.models[p.model].model;
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
        write_npy(&x0, &edir.join("input.npy"))?;
        artifacts.push(art(
            "input",
            None,
            Some(format!("{ENTRY}input.png")),
            "input.npy",
            x0.dims().to_vec(),
        ));
        let l0 = logits.squeeze(0)?;
        write_npy(&l0, &edir.join("logits.npy"))?;
        artifacts.push(art("logits", None, None, "logits.npy", l0.dims().to_vec()));
        let mut layers = Vec::new();
        for (info, (name, act)) in model.layers().iter().zip(&tap.activations) {
            debug_assert_eq!(&info.name, name);
            let base = format!("activations/{name}");
            if let Some(v) = layer_picture(&act.squeeze(0)?, info, &base, edir)? {
                layers.push(v);
                artifacts.push(art(
                    "activation",
                    Some(name),
                    Some(format!("{ENTRY}{base}.png")),
                    &format!("{base}.npy"),
                    act.dims()[1..].to_vec(),
                ));
            }
        }
        Ok(ForwardData {
            probs,
            layers,
            artifacts,
        })
    }

    /// One pair: its forward pass and the `wanted` methods, from the cache or computed; with
    /// a site folder, their files are linked into the pair's pages.
    fn compute_pair(&self, p: Pair, out: Option<&Path>, cache: &Cache, wanted: &[bool]) -> Result<PairView> {
        let mc = &self.config.models[p.model];
        let ic = &self.config.images[p.image];
        let dir = plan::image_dir(&mc.id, &ic.id);
        let (shown, x) = img::prepare(&self.images[p.image], &mc.input)?;
        let fkey = self.forward_key(p);
        let stored = cache.get_or_put("forward", &fkey, |edir| self.compute_forward(p, &x, &shown, edir))?;
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
        let explained = crate::explain::explain(self, p, &x, &shown, &probs, &fkey, cache, wanted, out, &dir)?;
        computed += explained.computed;
        artifacts.extend(explained.artifacts.iter().cloned());
        Ok(PairView {
            top5,
            layers: data.layers,
            input_png: format!("{dir}/input.png"),
            artifacts,
            explained,
            computed,
        })
    }
}

/// Draws a conv or linear weight tensor (or its gradient) and writes `<base>.png/.npy`
/// into the cache entry folder `edir`.
pub(crate) fn weight_picture(
    w: &Tensor,
    layer: &models::LayerInfo,
    tensor: &str,
    base: &str,
    edir: &Path,
) -> Result<Option<(Value, Artifact)>> {
    let dims = w.dims().to_vec();
    let data = w.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    let scale = Scale::fit(&data);
    // Large layers are drawn in part (the .npy always holds everything): at most 64 filters
    // and 16 input channels for spatial kernels; 1×1 kernels and linear layers as a matrix.
    let (picture, caption) = match (layer.kind, dims.as_slice()) {
        (LayerKind::Conv, &[o, i, 1, 1]) | (LayerKind::Linear, &[o, i]) => {
            // Huge matrices (VGG's 4096 × 25088) are drawn and exported in part.
            let (so, si) = (o.min(MAX_ROWS), i.min(MAX_COLS));
            let zoom = (480 / so.max(si) as u32).clamp(1, 8);
            if (so, si) != (o, i) {
                let part = w.narrow(0, 0, so)?.narrow(1, 0, si)?;
                let pdata = part
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1::<f32>()?;
                let caption = format!(
                    "{o} outputs (rows) × {i} inputs (columns); the first {so} × {si} are drawn and in the .npy"
                );
                let picture = grid::maps(&pdata, 1, so, si, 1, zoom, &scale);
                return finish_weight_picture(&part, picture, caption, scale, layer, tensor, base, edir);
            }
            let caption = format!("{o} outputs (rows) × {i} inputs (columns)");
            (grid::maps(&data, 1, o, i, 1, zoom, &scale), caption)
        }
        (LayerKind::Conv, &[o, i, kh, kw]) => {
            let (so, si) = (o.min(if i > 1 { 32 } else { 64 }), i.min(16));
            let mut shown = Vec::with_capacity(so * si * kh * kw);
            for f in 0..so {
                let start = f * i * kh * kw;
                shown.extend_from_slice(&data[start..start + si * kh * kw]);
            }
            let cols = if i > 1 { si } else { so.min(16) };
            let zoom = grid::zoom_for(kh, kw, if kh * kw >= 25 { 60 } else { 40 });
            let part = if (so, si) != (o, i) {
                format!(" (first {so} filters × {si} channels shown)")
            } else {
                String::new()
            };
            let caption = if i > 1 {
                format!("{o} filters (rows) × {i} input channels (columns), {kh}×{kw} each{part}")
            } else {
                format!("{o} filters, {kh}×{kw} each{part}")
            };
            (grid::maps(&shown, so * si, kh, kw, cols, zoom, &scale), caption)
        }
        _ => return Ok(None),
    };
    finish_weight_picture(w, picture, caption, scale, layer, tensor, base, edir)
}

/// The most rows and columns of a weight matrix drawn and exported.
const MAX_ROWS: usize = 512;
const MAX_COLS: usize = 1024;

#[allow(clippy::too_many_arguments)]
fn finish_weight_picture(
    w: &Tensor,
    picture: image::RgbImage,
    caption: String,
    scale: Scale,
    layer: &models::LayerInfo,
    tensor: &str,
    base: &str,
    edir: &Path,
) -> Result<Option<(Value, Artifact)>> {
    let dims = w.dims().to_vec();
    grid::save_png(&picture, &edir.join(format!("{base}.png")))?;
    write_npy(w, &edir.join(format!("{base}.npy")))?;
    let (lo, hi) = scale.range();
    let kind = if layer.kind == LayerKind::Conv {
        "filters"
    } else {
        "weights"
    };
    let view = json!({
        "layer": layer.name, "kind": kind, "tensor": tensor, "shape": shape_str(&dims),
        "caption": caption, "png": format!("{ENTRY}{base}.png"), "npy": format!("{ENTRY}{base}.npy"),
        "min": lo, "max": hi, "colormap": scale.name(), "colorbar": colorbar_name(&scale),
    });
    let art = Artifact {
        kind: kind.to_string(),
        png: Some(format!("{ENTRY}{base}.png")),
        npy: Some(format!("{ENTRY}{base}.npy")),
        shape: dims,
        layer: Some(layer.name.clone()),
        ..Default::default()
    };
    Ok(Some((view, art)))
}

/// The most feature maps drawn for one layer.
const MAX_MAPS: usize = 64;

/// Draws one layer's maps (`C×H×W`: a grid) or units (`N`: a strip) and writes
/// `<base>.png/.npy` into the cache entry folder `edir`; used for activations and their
/// gradients alike.
pub(crate) fn layer_picture(a: &Tensor, info: &models::LayerInfo, base: &str, edir: &Path) -> Result<Option<Value>> {
    let dims = a.dims().to_vec();
    let data = a.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    let scale = Scale::fit(&data);
    let picture = match dims.as_slice() {
        // Wide layers show their first 64 maps; the .npy holds all of them.
        &[c, h, w] => grid::maps(&data, c.min(MAX_MAPS), h, w, c.min(8), grid::zoom_for(h, w, 84), &scale),
        &[n] => grid::strip(&data, (720 / n as u32).clamp(3, 24), 28, &scale),
        _ => return Ok(None),
    };
    grid::save_png(&picture, &edir.join(format!("{base}.png")))?;
    write_npy(a, &edir.join(format!("{base}.npy")))?;
    let (lo, hi) = scale.range();
    let (amin, amax) = data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let strongest = (dims.len() == 1).then(|| {
        let mut idx: Vec<usize> = (0..data.len()).collect();
        idx.sort_by(|&a, &b| data[b].total_cmp(&data[a]).then(a.cmp(&b)));
        idx.truncate(3);
        idx
    });
    Ok(Some(json!({
        "name": info.name, "kind": info.kind.as_str(), "shape": shape_str(&dims),
        "vector": dims.len() == 1, "png": format!("{ENTRY}{base}.png"), "npy": format!("{ENTRY}{base}.npy"),
        "min": lo, "max": hi, "value_min": amin, "value_max": amax,
        "colormap": scale.name(), "colorbar": colorbar_name(&scale), "strongest": strongest,
        "shown": match dims.as_slice() { &[c, _, _] if c > MAX_MAPS => Some(MAX_MAPS), _ => None },
    })))
}

pub(crate) fn colorbar_name(scale: &Scale) -> &'static str {
    match scale {
        Scale::Sequential { .. } => "static/colorbar-sequential.png",
        Scale::Diverging { .. } => "static/colorbar-diverging.png",
    }
}

pub(crate) fn pct(p: f32) -> String {
    format!("{:.1}%", 100.0 * p)
}

/// A path as the manifest shows it: relative to the config's folder, with `/`.
fn shown_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/")
}

impl Site {
    /// What the site was built from: the tool's version and the blake3 of the config, the
    /// weights, the class lists and the images. Written at the top of the manifest.
    pub fn provenance(&self) -> Value {
        let root = &self.config.root;
        let h = &self.hashes;
        json!({
            "tool": format!("cnnscope {}", env!("CARGO_PKG_VERSION")),
            "compute_version": cache::COMPUTE_VERSION,
            "config": {"path": shown_path(root, &self.config.path), "blake3": h.config},
            "models": self.config.models.iter().enumerate().map(|(i, m)| json!({
                "id": m.id, "arch": m.arch.id,
                "weights": {"path": shown_path(root, &m.weights), "blake3": h.weights[i]},
                "classes": {"path": shown_path(root, &m.classes_path), "blake3": h.classes[i]},
            })).collect::<Vec<_>>(),
            "images": self.config.images.iter().enumerate().map(|(i, im)| json!({
                "id": im.id, "path": shown_path(root, &im.path), "blake3": h.images[i],
            })).collect::<Vec<_>>(),
        })
    }

    fn base_context(&self, dir: &str, title: &str) -> tera::Context {
        let root = plan::root_from(dir);
        let mut ctx = tera::Context::new();
        ctx.insert("root", &root);
        let short = |h: &str| h[..12].to_string();
        ctx.insert(
            "provenance",
            &json!({
                "tool": format!("cnnscope {}", env!("CARGO_PKG_VERSION")),
                "config": short(&self.hashes.config),
                "weights": self.config.models.iter().zip(&self.hashes.weights)
                    .map(|(m, h)| json!({"model": m.id, "blake3": short(h)})).collect::<Vec<_>>(),
                "images": self.config.images.len(),
            }),
        );
        ctx.insert("page_title", title);
        ctx.insert(
            "site",
            &json!({"title": self.config.site.title, "description": self.config.site.description}),
        );
        let models: Vec<Value> = self
            .config
            .models
            .iter()
            .map(|m| json!({"id": m.id, "href": format!("{}/index.html", plan::model_dir(&m.id))}))
            .collect();
        let notes: Vec<Value> = self
            .content
            .notes
            .iter()
            .map(|n| json!({"title": n.title, "href": format!("{}/index.html", plan::note_dir(&n.slug))}))
            .collect();
        ctx.insert("nav", &json!({"models": models, "notes": notes}));
        ctx
    }

    /// The context of a page about one model × image pair (attributions, gradients).
    fn pair_context(&self, dir: &str, what: &str, mc: &ModelConfig, ic: &ImageConfig, pair: &Value) -> tera::Context {
        let mut ctx = self.base_context(
            dir,
            &format!("{what}: {} × {} · {}", mc.id, ic.id, self.config.site.title),
        );
        ctx.insert(
            "model",
            &json!({"id": mc.id, "href": format!("{}/index.html", plan::model_dir(&mc.id))}),
        );
        ctx.insert("image", &json!({"id": ic.id}));
        ctx.insert("pair", pair);
        ctx
    }

    fn write_page(&self, out: &Path, dir: &str, template: &str, ctx: &tera::Context) -> Result<()> {
        let html = self.theme.render(template, ctx)?;
        let d = out.join(dir);
        mkdir(&d)?;
        let p = d.join("index.html");
        std::fs::write(&p, html).at_path(&p)
    }

    fn training_view(&self, mc: &ModelConfig, log: &TrainLog) -> Result<Value> {
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
        let names: Vec<&str> = (0..log.confusion.len())
            .map(|i| mc.classes.get(i).map(String::as_str).unwrap_or("?"))
            .collect();
        let rows: Vec<Value> = log
            .confusion
            .iter()
            .enumerate()
            .map(|(t, row)| {
                let total: usize = row.iter().sum();
                let cells: Vec<Value> = row
                    .iter()
                    .enumerate()
                    .map(|(p, &n)| {
                        // Shade by the share of the true class, so errors stand out.
                        let share = if total > 0 { n as f64 / total as f64 } else { 0.0 };
                        json!({"count": n, "diagonal": p == t, "share": format!("{:.3}", share)})
                    })
                    .collect();
                json!({"name": names[t], "cells": cells, "total": total,
                       "recall": if total > 0 { pct(row[t] as f32 / total as f32) } else { "–".into() }})
            })
            .collect();
        Ok(json!({
            "loss_svg": loss, "accuracy_svg": acc, "classes": names, "confusion": rows,
            "accuracy": pct(log.test_accuracy as f32), "epochs": log.epochs.len(),
            "train_digits": log.train_digits, "test_digits": log.test_digits, "seed": log.seed,
            "optimizer": log.optimizer, "learning_rate": log.learning_rate, "batch_size": log.batch_size,
            "normalisation": log.normalisation,
            "table": log.epochs.iter().map(|e| json!({
                "epoch": e.epoch, "train_loss": format!("{:.4}", e.train_loss), "test_loss": format!("{:.4}", e.test_loss),
                "train_accuracy": pct(e.train_accuracy as f32), "test_accuracy": pct(e.test_accuracy as f32)})).collect::<Vec<_>>(),
        }))
    }

    fn label_of(&self, ic: &ImageConfig, mc: &ModelConfig) -> Option<Value> {
        ic.label_index(mc).map(|i| json!({"index": i, "name": mc.classes[i]}))
    }

    fn write_pages(&self, out: &Path, pairs: &[Pair], models: &[ModelView], views: &[PairView]) -> Result<usize> {
        let mut pages = 0;
        for (name, bytes) in &self.theme.statics {
            mkdir(&out.join("static"))?;
            let p = out.join("static").join(name);
            std::fs::write(&p, bytes).at_path(&p)?;
        }
        mkdir(&out.join("static"))?;
        grid::save_png(
            &grid::colorbar(&Scale::Sequential { min: 0.0, max: 1.0 }, 256, 12),
            &out.join("static/colorbar-sequential.png"),
        )?;
        grid::save_png(
            &grid::colorbar(&Scale::Diverging { abs: 1.0 }, 256, 12),
            &out.join("static/colorbar-diverging.png"),
        )?;

        let pair_link = |p: &Pair, v: &PairView| {
            let mc = &self.config.models[p.model];
            let ic = &self.config.images[p.image];
            let top = &v.top5[0];
            let label = ic.label_index(mc);
            json!({"model": mc.id, "image": ic.id, "href": format!("{}/index.html", plan::image_dir(&mc.id, &ic.id)),
                   "input": v.input_png, "top1": top.name, "top1_probability": pct(top.probability),
                   "correct": label.map(|l| l == top.index)})
        };

        // Home.
        let model_cards: Vec<Value> = self
            .config
            .models
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                let total: usize = self.models[mi].model.layers().iter().map(|l| l.parameters).sum();
                json!({"id": m.id, "arch": m.arch.id, "summary": m.arch.summary, "parameters": total,
                       "description": to_html(&m.description), "href": format!("{}/index.html", plan::model_dir(&m.id)),
                       "accuracy": self.training[mi].as_ref().map(|l| pct(l.test_accuracy as f32))})
            })
            .collect();
        let image_cards: Vec<Value> = self
            .config
            .images
            .iter()
            .enumerate()
            .map(|(ii, ic)| {
                let links: Vec<Value> = pairs
                    .iter()
                    .zip(views)
                    .filter(|(p, _)| p.image == ii)
                    .map(|(p, v)| pair_link(p, v))
                    .collect();
                json!({"id": ic.id, "caption": to_html(&ic.caption), "pairs": links,
                       "thumb": links.first().map(|l| l["input"].clone())})
            })
            .collect();
        let mut ctx = self.base_context("", &self.config.site.title);
        ctx.insert("intro", &self.content.intro.as_ref().map(|n| n.html.clone()));
        ctx.insert("models", &model_cards);
        ctx.insert("images", &image_cards);
        self.write_page(out, "", "index.html", &ctx)?;
        pages += 1;

        // Models.
        for (mi, mc) in self.config.models.iter().enumerate() {
            let model = &self.models[mi].model;
            let dir = plan::model_dir(&mc.id);
            let total: usize = model.layers().iter().map(|l| l.parameters).sum();
            let layers: Vec<Value> = model
                .layers()
                .iter()
                .map(|l| json!({"name": l.name, "kind": l.kind.as_str(), "shape": shape_str(&l.output_shape), "parameters": l.parameters}))
                .collect();
            let training = match &self.training[mi] {
                Some(log) => Some(self.training_view(mc, log)?),
                None => None,
            };
            let images: Vec<Value> = pairs
                .iter()
                .zip(views)
                .filter(|(p, _)| p.model == mi)
                .map(|(p, v)| pair_link(p, v))
                .collect();
            let mut ctx = self.base_context(&dir, &format!("{} · {}", mc.id, self.config.site.title));
            ctx.insert(
                "model",
                &json!({"id": mc.id, "arch": mc.arch.id, "summary": mc.arch.summary, "description": to_html(&mc.description),
                        "parameters": total, "layers": layers, "weights": models[mi].weights,
                        "input": format!("{}×{}×{}", mc.input.channels, mc.input.height, mc.input.width),
                        "mean": mc.input.mean.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                        "std": mc.input.std.iter().map(|v| v.to_string()).collect::<Vec<_>>(), "classes": mc.classes.len()}),
            );
            ctx.insert("training", &training);
            let slugs = crate::explain::method_slugs(&mc.methods);
            let methods: Vec<Value> = mc
                .methods
                .iter()
                .zip(&slugs)
                .filter(|(m, _)| m.is_map())
                .map(|(m, s)| json!({"title": m.title(), "href": format!("{dir}/methods/{s}/index.html")}))
                .collect();
            ctx.insert("methods", &methods);
            ctx.insert("images", &images);
            self.write_page(out, &dir, "model.html", &ctx)?;
            pages += 1;
        }

        // Model × image.
        for (p, v) in pairs.iter().zip(views) {
            let mc = &self.config.models[p.model];
            let ic = &self.config.images[p.image];
            let dir = plan::image_dir(&mc.id, &ic.id);
            let label = ic.label_index(mc);
            let top5: Vec<Value> = v
                .top5
                .iter()
                .enumerate()
                .map(|(r, c)| json!({"rank": r + 1, "index": c.index, "name": c.name, "probability": pct(c.probability),
                                    "width": format!("{:.1}", 100.0 * c.probability), "is_label": Some(c.index) == label}))
                .collect();
            let mut ctx = self.base_context(&dir, &format!("{} × {} · {}", mc.id, ic.id, self.config.site.title));
            ctx.insert("model", &json!({"id": mc.id, "arch": mc.arch.id, "href": format!("{}/index.html", plan::model_dir(&mc.id)),
                                        "input": format!("{}×{}×{}", mc.input.channels, mc.input.height, mc.input.width)}));
            ctx.insert(
                "image",
                &json!({"id": ic.id, "caption": to_html(&ic.caption), "input": v.input_png,
                                        "label": self.label_of(ic, mc),
                                        "correct": label.map(|l| l == v.top5[0].index)}),
            );
            ctx.insert("top5", &top5);
            ctx.insert("layers", &v.layers);
            let ex = &v.explained;
            let pair = json!({
                "href": format!("{dir}/index.html"),
                "attributions": (!ex.rows.is_empty()).then(|| format!("{dir}/attributions/index.html")),
                "gradients": (!ex.activation_gradients.is_empty() || ex.weight_gradients.is_some())
                    .then(|| format!("{dir}/gradients/index.html")),
            });
            ctx.insert("pair", &pair);
            // The predicted class's row of overlays, as a preview of the matrix.
            let preview: Vec<Value> = ex
                .rows
                .iter()
                .filter_map(|r| {
                    r["cells"]
                        .get(0)
                        .map(|c| json!({"title": r["title"], "slug": r["slug"], "overlay": c["overlay"]}))
                })
                .collect();
            ctx.insert("preview", &preview);
            ctx.insert("preview_target", &ex.targets.first().map(|t| t.name.clone()));
            self.write_page(out, &dir, "image.html", &ctx)?;
            pages += 1;
            let targets = crate::explain::targets_view(&ex.targets);
            if !ex.rows.is_empty() {
                let adir = format!("{dir}/attributions");
                let mut ctx = self.pair_context(&adir, "Attributions", mc, ic, &pair);
                ctx.insert("targets", &targets);
                ctx.insert("rows", &ex.rows);
                self.write_page(out, &adir, "attributions.html", &ctx)?;
                pages += 1;
            }
            if pair["gradients"].is_string() {
                let gdir = format!("{dir}/gradients");
                let mut ctx = self.pair_context(&gdir, "Gradients", mc, ic, &pair);
                ctx.insert("activation_gradients", &ex.activation_gradients);
                ctx.insert("weight_gradients", &ex.weight_gradients);
                self.write_page(out, &gdir, "gradients.html", &ctx)?;
                pages += 1;
            }
        }

        // One page per model and method: the method across all images, for each image's targets.
        for (mi, mc) in self.config.models.iter().enumerate() {
            let slugs = crate::explain::method_slugs(&mc.methods);
            for (k, method) in mc.methods.iter().enumerate() {
                if !method.is_map() {
                    continue;
                }
                let dir = format!("{}/methods/{}", plan::model_dir(&mc.id), slugs[k]);
                let images: Vec<Value> = pairs
                    .iter()
                    .zip(views)
                    .filter(|(p, _)| p.model == mi)
                    .filter_map(|(p, v)| {
                        let ic = &self.config.images[p.image];
                        let row = v.explained.rows.iter().find(|r| r["slug"] == slugs[k].as_str())?;
                        let cells: Vec<Value> = row["cells"]
                            .as_array()?
                            .iter()
                            .zip(&v.explained.targets)
                            .map(|(c, t)| json!({"overlay": c["overlay"], "target": t.name, "roles": t.roles.join(", "),
                                                 "probability": pct(t.probability)}))
                            .collect();
                        let idir = plan::image_dir(&mc.id, &ic.id);
                        Some(json!({"id": ic.id, "href": format!("{idir}/attributions/index.html#{}", slugs[k]), "cells": cells}))
                    })
                    .collect();
                let mut ctx = self.base_context(
                    &dir,
                    &format!("{} on {} · {}", method.title(), mc.id, self.config.site.title),
                );
                ctx.insert(
                    "model",
                    &json!({"id": mc.id, "href": format!("{}/index.html", plan::model_dir(&mc.id))}),
                );
                ctx.insert(
                    "method",
                    &json!({"id": method.id(), "title": method.title(),
                                             "params": method.params(mc.arch, &mc.input)}),
                );
                ctx.insert("images", &images);
                self.write_page(out, &dir, "method.html", &ctx)?;
                pages += 1;
            }
        }

        // Notes.
        for n in &self.content.notes {
            let dir = plan::note_dir(&n.slug);
            let mut ctx = self.base_context(&dir, &format!("{} · {}", n.title, self.config.site.title));
            ctx.insert("note", &json!({"title": n.title, "html": n.html}));
            self.write_page(out, &dir, "note.html", &ctx)?;
            pages += 1;
        }
        Ok(pages)
    }

    fn write_manifest(
        &self,
        out: &Path,
        _models: &[ModelView],
        views: &[PairView],
        artifacts: &[Artifact],
    ) -> Result<()> {
        let plan = plan::plan(&self.config);
        let models: Vec<Value> = self
            .config
            .models
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                let layers = self.models[mi].model.layers();
                json!({"id": m.id, "arch": m.arch.id, "parameters": layers.iter().map(|l| l.parameters).sum::<usize>(),
                       "classes": m.classes.len(), "page": format!("{}/index.html", plan::model_dir(&m.id)),
                       "layers": layers.iter().map(|l| json!({"name": l.name, "kind": l.kind.as_str(),
                                "output_shape": l.output_shape, "parameters": l.parameters})).collect::<Vec<_>>()})
            })
            .collect();
        let pairs: Vec<Value> = plan
            .pairs
            .iter()
            .zip(views)
            .map(|(p, v)| {
                let mc = &self.config.models[p.model];
                let ic = &self.config.images[p.image];
                let targets: Vec<Value> = v
                    .explained
                    .targets
                    .iter()
                    .map(|t| json!({"index": t.index, "name": t.name, "roles": t.roles}))
                    .collect();
                json!({"model": mc.id, "image": ic.id, "label": ic.label_index(mc),
                       "page": format!("{}/index.html", plan::image_dir(&mc.id, &ic.id)), "top5": v.top5,
                       "targets": targets})
            })
            .collect();
        let notes: Vec<Value> = self
            .content
            .notes
            .iter()
            .map(|n| json!({"slug": n.slug, "title": n.title, "page": format!("{}/index.html", plan::note_dir(&n.slug))}))
            .collect();
        let manifest = json!({
            "generator": format!("cnnscope {}", env!("CARGO_PKG_VERSION")),
            "provenance": self.provenance(),
            "site": {"title": self.config.site.title, "description": self.config.site.description},
            "models": models, "pairs": pairs, "notes": notes, "artifacts": artifacts,
        });
        let p = out.join("manifest.json");
        let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::msg(e.to_string()))?;
        std::fs::write(&p, text + "\n").at_path(&p)
    }
}
