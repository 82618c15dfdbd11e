//! Building a site: [`Site::load`] checks everything and writes nothing; [`Site::build`]
//! then runs a flat list of timed phases — weight pictures, forward passes and methods
//! (through the cache), pages, manifest — into a staging folder that replaces the output
//! only when every phase succeeded.

pub mod artifact;
pub mod compute;
pub mod explain;
pub mod featurevis;
pub mod figures;
pub mod keys;
pub mod links;
pub mod output;
pub mod site;
pub mod units;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

pub use artifact::{Artifact, ClassRef};
pub use compute::{ClassProb, ModelResult, PairResult};
pub use site::{Hashes, LoadOptions, Site};

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::metrics::randomisation::Randomised;
use crate::pages;
use crate::plan::{self, Pair, Shard, Unit};
use compute::PairSource;
use site::timed;

/// How a build uses the cache and which part of the work it does.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The cache folder [default: `.cnnscope-cache` next to the config].
    pub cache: Option<PathBuf>,
    /// Reuse nothing and keep nothing: a temporary cache next to the output, removed after.
    pub no_cache: bool,
    /// Compute only this shard's units into the cache, and write no site.
    pub shard: Option<Shard>,
    /// Delete the previous site on another thread after swapping the new one in (`serve`).
    pub background_cleanup: bool,
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
    /// What the compute phases produced (none for a shard): `serve` keeps it to redraw an
    /// edited note without a rebuild.
    pub results: Option<Computed>,
}

/// The compute phases' results, from which every page is drawn.
pub struct Computed {
    pub models: Vec<compute::ModelResult>,
    pub pairs: Vec<compute::PairResult>,
    pub units: Vec<units::UnitsResult>,
    pub featurevis: Vec<featurevis::FvResult>,
}

impl std::fmt::Debug for Computed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Computed({} models, {} pairs)", self.models.len(), self.pairs.len())
    }
}

impl Site {
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
        let staging = output::prepare(output)?;
        let result = (|| {
            let cache = if opts.no_cache {
                // Next to the staging folder (same file system, so files are hard-linked),
                // and named after it, so a killed build's is removed with it.
                Cache::temporary(&PathBuf::from(format!("{}.cache", staging.display())))?
            } else {
                Cache::open(&opts.cache.clone().unwrap_or_else(|| self.default_cache_dir()))?
            };
            let mut report = self.build_into(Some(&staging), &cache, None, log)?;
            output::swap_in(&staging, output, opts.background_cleanup)?;
            report.output = Some(output.to_path_buf());
            Ok(report)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    /// The cached inputs of one pair.
    fn source<'a>(&'a self, pair: Pair, randomised: &'a [Option<Randomised<'a>>]) -> PairSource<'a> {
        PairSource {
            randomised: randomised.get(pair.model).and_then(Option::as_ref),
            pair,
            mc: &self.config.models[pair.model],
            ic: &self.config.images[pair.image],
            model: &self.models[pair.model],
            image: &self.images[pair.image],
            weights_hash: &self.hashes.weights[pair.model],
            image_hash: &self.hashes.images[pair.image],
        }
    }

    /// The phases of a build: compute what is missing from the cache (only `shard`'s units,
    /// if given) and, with a site folder, link every entry into it and write the pages and
    /// the manifest.
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
        let position: HashMap<Unit, usize> = units.iter().enumerate().map(|(i, u)| (*u, i)).collect();
        let owned = |u: Unit| shard.is_none_or(|s| position.get(&u).is_some_and(|&i| s.owns(i)));

        let models = timed(&mut timings, "model pictures", || {
            (0..self.models.len())
                .into_par_iter()
                .filter(|&model| owned(Unit::Weights { model }))
                .map(|mi| {
                    let mc = &self.config.models[mi];
                    compute::model_pictures(mc, &self.models[mi], &self.hashes.weights[mi], out, cache)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let randomised = self.randomised();
        let pairs = timed(&mut timings, "forward passes and pictures", || {
            self.compute_pairs(&plan.pairs, &randomised, &owned, out, cache, log)
        })?;

        let unit_results = timed(&mut timings, "unit analyses", || {
            (0..self.models.len())
                .filter(|&model| self.units[model].is_some() && owned(Unit::Units { model }))
                .map(|mi| {
                    let mu = self.units[mi].as_ref().expect("filtered");
                    units::compute_units(
                        &self.config,
                        mi,
                        &self.models[mi],
                        mu,
                        &self.hashes.weights[mi],
                        out,
                        cache,
                        log,
                    )
                })
                .collect::<Result<Vec<_>>>()
        })?;

        let fv_results = timed(&mut timings, "feature visualization", || {
            let jobs: Vec<Option<Vec<featurevis::FvJob>>> = (0..self.models.len())
                .map(|model| {
                    self.featurevis[model]
                        .clone()
                        .filter(|_| owned(Unit::FeatureVis { model }))
                })
                .collect();
            featurevis::compute_all(&self.config, &self.models, &jobs, &self.hashes.weights, out, cache, log)
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
            results: None,
        };
        if let Some(out) = out {
            let input = pages::Input {
                site: self,
                models: &models,
                pairs: &pairs,
                units: &unit_results,
                featurevis: &fv_results,
            };
            report.pages = timed(&mut timings, "pages", || pages::write(&input, out))?;
            report.artifacts = timed(&mut timings, "manifest", || pages::manifest::write(&input, out))?;
            report.results = Some(Computed {
                models,
                pairs,
                units: unit_results,
                featurevis: fv_results,
            });
        }
        report.timings = timings;
        Ok(report)
    }

    /// Redraws the pages of the notes read from `sources` (and the search index) in the
    /// site folder `out` from an earlier build's results, every file replaced whole. Only
    /// right when nothing but those notes' text changed since: `serve` checks that
    /// (`Content::same_outline`) and rebuilds otherwise.
    pub fn redraw_notes(&self, results: &Computed, out: &Path, sources: &[PathBuf]) -> Result<usize> {
        let input = pages::Input {
            site: self,
            models: &results.models,
            pairs: &results.pairs,
            units: &results.units,
            featurevis: &results.featurevis,
        };
        let n = pages::note::redraw(&input, out, sources)?;
        pages::search::write(&input, out)?;
        Ok(n)
    }

    /// Every pair that has owned work, computed in parallel, with a progress line each.
    #[allow(clippy::too_many_arguments)]
    fn compute_pairs(
        &self,
        pairs: &[Pair],
        randomised: &[Option<Randomised>],
        owned: &(dyn Fn(Unit) -> bool + Sync),
        out: Option<&Path>,
        cache: &Cache,
        log: &(dyn Fn(&str) + Sync),
    ) -> Result<Vec<PairResult>> {
        let done = AtomicUsize::new(0);
        let total = pairs.len();
        pairs
            .par_iter()
            .enumerate()
            .filter_map(|(pair, p)| {
                let methods: Vec<bool> = (0..self.config.models[p.model].methods.len())
                    .map(|method| owned(Unit::Method { pair, method }))
                    .collect();
                let randomise = owned(Unit::Randomisation { pair });
                (owned(Unit::Forward { pair }) || randomise || methods.iter().any(|&m| m))
                    .then_some((*p, methods, randomise))
            })
            .map(|(p, wanted, randomise)| {
                let started = Instant::now();
                let v = compute::compute_pair(&self.source(p, randomised), out, cache, &wanted, randomise)?;
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                let computed: Vec<String> = v
                    .explained
                    .timings
                    .iter()
                    .filter_map(|(m, t)| t.map(|t| format!("{m} {t:.1}s")))
                    .collect();
                let what = if v.computed == 0 {
                    ": all reused from the cache".to_string()
                } else if computed.is_empty() {
                    String::new()
                } else {
                    format!(": {}", computed.join(", "))
                };
                log(&crate::progress::step_line(
                    n,
                    total,
                    &format!(
                        "{} × {} ({:.1} s{what})",
                        self.config.models[p.model].id,
                        self.config.images[p.image].id,
                        started.elapsed().as_secs_f64(),
                    ),
                ));
                Ok(v)
            })
            .collect()
    }

    /// Per model, its randomised copies when the metrics ask for the randomisation test
    /// (made on first use).
    fn randomised(&self) -> Vec<Option<Randomised<'_>>> {
        self.config
            .models
            .iter()
            .zip(&self.models)
            .map(|(mc, lm)| {
                let r = mc.metrics.randomisation.as_ref()?;
                let checkpoints = explain::checkpoints_of(mc, lm.model.layers());
                Some(Randomised::new(
                    lm,
                    mc.arch,
                    &mc.input,
                    mc.classes.len(),
                    checkpoints,
                    r.seed,
                ))
            })
            .collect()
    }

    /// Every cache key the current config refers to, for `cache gc`. Method entries are
    /// found through their pair's forward entry (which says the targets); a pair whose
    /// forward entry is missing contributes only that key.
    pub fn referenced_keys(&self, cache: &Cache) -> Result<BTreeSet<String>> {
        let mut keys = BTreeSet::new();
        for (mi, mc) in self.config.models.iter().enumerate() {
            keys.insert(keys::weights(mc, &self.hashes.weights[mi]));
            if let Some(mu) = &self.units[mi] {
                keys.extend(units::keys(mc, &self.hashes.weights[mi], mu));
            }
            if let Some(jobs) = &self.featurevis[mi] {
                keys.extend(featurevis::keys(mc, &self.hashes.weights[mi], jobs));
            }
        }
        for p in plan::plan(&self.config).pairs {
            let src = self.source(p, &[]);
            let fkey = src.forward_key();
            if let Some(stored) = cache.get(&fkey) {
                let data: compute::ForwardData = stored.placed("")?;
                let layers = src.model.model.layers();
                keys.extend(explain::method_keys(src.mc, src.ic, layers, &fkey, &data.probs));
            }
            keys.insert(fkey);
        }
        Ok(keys)
    }
}
