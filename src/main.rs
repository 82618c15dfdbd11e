use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use cnnscope::build::{BuildOptions, Site};
use cnnscope::cache::Cache;
use cnnscope::train::{train_lenet5, TrainOptions};

#[derive(Parser)]
#[command(
    name = "cnnscope",
    version,
    about = "Build interpretability galleries of convolutional networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What a build publishes, shared by `build` and `serve`.
#[derive(clap::Args, Clone)]
struct Publish {
    /// Where the site will be published (`https://user.github.io/repo`): written into
    /// `sitemap.xml`, `robots.txt`, canonical links and the 404 page; pages keep relative links.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Also publish the notes marked `draft: true` in their front matter.
    #[arg(long)]
    drafts: bool,
    /// Print only errors and the final line (for CI logs).
    #[arg(long, short)]
    quiet: bool,
}

impl Publish {
    /// Checks the base URL: an absolute http(s) address.
    fn base_url(&self) -> cnnscope::Result<Option<String>> {
        match &self.base_url {
            None => Ok(None),
            Some(u)
                if (u.starts_with("https://") || u.starts_with("http://"))
                    && u.len() > 8
                    && !u.contains(char::is_whitespace) =>
            {
                Ok(Some(u.trim_end_matches('/').to_string()))
            }
            Some(u) => Err(cnnscope::Error::msg(format!(
                "--base-url `{u}`: expected an absolute address such as https://user.github.io/repo"
            ))),
        }
    }
}

#[derive(Subcommand)]
enum CacheAction {
    /// Remove entries the config no longer refers to, and leftovers of interrupted builds.
    Gc {
        #[arg(long, short, default_value = "gallery.yaml")]
        config: PathBuf,
        /// Cache folder [default: `.cnnscope-cache/` next to the config].
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Print the cache's folder, entry count and size.
    Info {
        #[arg(long, short, default_value = "gallery.yaml")]
        config: PathBuf,
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Build the site: run the models on the images, draw everything, write the pages.
    Build {
        /// The gallery config.
        #[arg(long, short, default_value = "gallery.yaml")]
        config: PathBuf,
        /// Output folder [default: `public/` next to the config]. It is replaced as a whole
        /// when the build succeeds and left untouched when it fails.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Cache folder for computed artifacts [default: `.cnnscope-cache/` next to the config].
        #[arg(long, conflicts_with = "no_cache")]
        cache: Option<PathBuf>,
        /// Compute everything afresh and keep nothing (a temporary cache, removed after).
        #[arg(long)]
        no_cache: bool,
        /// Compute only part K of N of the work into the cache and write no site; a build over
        /// a cache holding every part's entries then assembles the site without computing.
        #[arg(long, value_name = "K/N")]
        shard: Option<cnnscope::plan::Shard>,
        #[command(flatten)]
        publish: Publish,
    },
    /// Build, serve the site on loopback, rebuild on every change to the config, notes,
    /// theme, images, datasets or weights, and reload the open pages.
    Serve {
        #[arg(long, short, default_value = "gallery.yaml")]
        config: PathBuf,
        /// Output folder [default: `public/` next to the config], as for `build`.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Cache folder [default: `.cnnscope-cache/` next to the config].
        #[arg(long)]
        cache: Option<PathBuf>,
        /// The port to listen on (0: any free port; the address is printed).
        #[arg(long, default_value_t = 1111)]
        port: u16,
        /// The address to listen on; the default serves this machine only.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        #[command(flatten)]
        publish: Publish,
    },
    /// Write a new gallery that builds as it is (a config, notes, the trained LeNet-5 with
    /// three digits, a copy of the theme) into DIR, which must be new or empty.
    Init { dir: PathBuf },
    /// Inspect or prune the artifact cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Load and validate everything (config, files, weights, notes, theme), then build the
    /// site into a temporary folder (through the cache) and check every internal link and
    /// anchor; reports every problem at once.
    Check {
        #[arg(long, short, default_value = "gallery.yaml")]
        config: PathBuf,
        /// Cache folder [default: `.cnnscope-cache/` next to the config].
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Validate only; build nothing and check no links.
        #[arg(long)]
        no_links: bool,
    },
    /// Time the kernels the gallery's time goes to (median of several runs).
    Bench {
        /// EfficientNet-Lite0 weights.
        #[arg(long, default_value = "models/efficientnet-lite0.safetensors")]
        weights: PathBuf,
        /// Timed runs per operation (after one warm-up run).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Run only the benchmarks whose name contains this text (e.g. `efficientnet`).
        #[arg(long)]
        only: Option<String>,
    },
    /// Train a built-in architecture (lenet5) on IDX digits.
    Train {
        /// Architecture to train; only `lenet5` can be trained.
        arch: String,
        /// Folder with `*images-idx3-ubyte[.gz]` and `*labels-idx1-ubyte[.gz]`.
        #[arg(long, default_value = "data/mnist")]
        data: PathBuf,
        /// Where to write the weights (safetensors).
        #[arg(long, default_value = "models/lenet5-mnist.safetensors")]
        out: PathBuf,
        /// Where to write the JSON training log [default: OUT with extension .json].
        #[arg(long)]
        log: Option<PathBuf>,
        #[arg(long, default_value_t = 12)]
        epochs: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Train on the first N digits.
        #[arg(long, default_value_t = 8000)]
        train_size: usize,
        /// Evaluate on the last N digits.
        #[arg(long, default_value_t = 2000)]
        test_size: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Adam learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
    },
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn load(config: &Path, drafts: bool, say: &dyn Fn(&str)) -> cnnscope::Result<Site> {
    say(&format!("loading {}", config.display()));
    let site = Site::load_with(config, &cnnscope::build::LoadOptions { drafts })?;
    for (phase, t) in &site.timings {
        say(&format!("  {phase:<10} {}", secs(*t)));
    }
    if !site.theme.overridden.is_empty() {
        say(&format!(
            "  theme files overriding the defaults: {}",
            site.theme.overridden.join(", ")
        ));
    }
    Ok(site)
}

fn check(config: &Path, cache: Option<PathBuf>, no_links: bool) -> cnnscope::Result<()> {
    // Drafts are checked too: they are published with `--drafts`.
    let site = load(config, true, &|l| eprintln!("{l}"))?;
    let pairs = cnnscope::plan::plan(&site.config).pairs.len();
    let c = &site.content;
    let translated: Vec<String> = c
        .translations
        .iter()
        .map(|t| format!("{} in `{}`", t.notes.len() + usize::from(t.intro.is_some()), t.lang))
        .collect();
    let summary = format!(
        "{} model(s), {} image(s), {} model × image page(s), {} note(s){}",
        site.config.models.len(),
        site.config.images.len(),
        pairs,
        c.notes.len() + usize::from(c.intro.is_some()),
        if translated.is_empty() {
            String::new()
        } else {
            format!(" (and {})", translated.join(", "))
        }
    );
    if no_links {
        eprintln!("ok: {summary}");
        return Ok(());
    }
    // The links are those of the built pages: build into a temporary folder beside the
    // config, through the cache (a cold cache computes everything once).
    let tmp = site.config.root.join(format!(".cnnscope-check-{}", std::process::id()));
    eprintln!(
        "checking links: building the site into {} through the cache",
        tmp.display()
    );
    let opts = BuildOptions {
        cache,
        ..Default::default()
    };
    let built = site.build_with(&tmp, &opts, &|l| eprintln!("{l}"));
    let broken = built.and_then(|_| cnnscope::build::links::check(&site, &tmp));
    let _ = std::fs::remove_dir_all(&tmp);
    let broken = broken?;
    if broken.is_empty() {
        eprintln!("ok: {summary}; every internal link and anchor leads somewhere");
        return Ok(());
    }
    let mut msg = format!("{} broken internal link(s):", broken.len());
    for (i, b) in broken.iter().enumerate() {
        msg.push_str(&format!(
            "\n  {}. {}: `{}`: {} (on {}{})",
            i + 1,
            b.source,
            b.link,
            b.why,
            b.page,
            if b.pages > 1 {
                format!(" and {} more page(s)", b.pages - 1)
            } else {
                String::new()
            }
        ));
    }
    Err(cnnscope::Error::msg(msg))
}

fn build(config: &Path, output: Option<PathBuf>, opts: BuildOptions, publish: &Publish) -> cnnscope::Result<()> {
    let start = Instant::now();
    let progress = cnnscope::progress::Progress::new(publish.quiet);
    let say = |l: &str| progress.line(l);
    let base_url = publish.base_url()?;
    let mut site = load(config, publish.drafts, &say)?;
    site.base_url = base_url;
    let output = output.unwrap_or_else(|| site.config.root.join("public"));
    let pairs = cnnscope::plan::plan(&site.config).pairs.len();
    let cache = opts.cache.clone().unwrap_or_else(|| site.default_cache_dir());
    match opts.shard {
        Some(s) => say(&format!(
            "computing shard {}/{} of {pairs} model × image pair(s) into {}",
            s.k,
            s.n,
            cache.display()
        )),
        None if opts.no_cache => say(&format!(
            "building {pairs} model × image page(s) into {} (no cache)",
            output.display()
        )),
        None => say(&format!(
            "building {pairs} model × image page(s) into {} (cache {})",
            output.display(),
            cache.display()
        )),
    }
    let report = site.build_with(&output, &opts, &|line| say(line));
    progress.finish();
    let report = report?;
    for (phase, t) in &report.timings {
        say(&format!("  {phase:<28} {}", secs(*t)));
    }
    say(&format!(
        "cache: {} entries computed ({} files), {} reused ({} files)",
        report.computed, report.files_computed, report.reused, report.files_reused
    ));
    match &report.output {
        Some(out) => eprintln!(
            "done: {} pages, {} artifacts in {} ({} in all); open {}",
            report.pages,
            report.artifacts,
            out.display(),
            secs(start.elapsed()),
            out.join("index.html").display()
        ),
        None => eprintln!("done: shard computed in {}; no site written", secs(start.elapsed())),
    }
    Ok(())
}

fn serve(
    config: PathBuf,
    output: Option<PathBuf>,
    cache: Option<PathBuf>,
    port: u16,
    bind: String,
    publish: &Publish,
) -> cnnscope::Result<()> {
    let quiet = publish.quiet;
    let base_url = publish.base_url()?;
    cnnscope::serve::serve(
        cnnscope::serve::ServeOptions {
            config,
            output,
            build: BuildOptions {
                cache,
                background_cleanup: true,
                ..Default::default()
            },
            load: cnnscope::build::LoadOptions { drafts: publish.drafts },
            base_url,
            bind,
            port,
        },
        &|l| {
            if !quiet || l.starts_with("serving") || l.starts_with("error") {
                eprintln!("{l}")
            }
        },
    )
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn cache_command(action: CacheAction) -> cnnscope::Result<()> {
    let (config, dir, gc) = match action {
        CacheAction::Gc { config, cache } => (config, cache, true),
        CacheAction::Info { config, cache } => (config, cache, false),
    };
    let site = load(&config, false, &|l| eprintln!("{l}"))?;
    let dir = dir.unwrap_or_else(|| site.default_cache_dir());
    if !dir.is_dir() {
        eprintln!("no cache at {}", dir.display());
        return Ok(());
    }
    let cache = Cache::open(&dir)?;
    let (n, bytes) = cache.size();
    if gc {
        let keep = site.referenced_keys(&cache)?;
        let (removed, freed) = cache.gc(&keep)?;
        eprintln!(
            "{}: removed {removed} of {n} entries ({} freed); {} kept",
            dir.display(),
            mib(freed),
            n - removed
        );
    } else {
        let keep = site.referenced_keys(&cache)?;
        eprintln!(
            "{}: {n} entries, {}; {} of the entries the config refers to are present",
            dir.display(),
            mib(bytes),
            keep.iter().filter(|k| cache.get(k).is_some()).count()
        );
    }
    Ok(())
}

/// candle allocates a fresh buffer for every op. By default glibc serves buffers over
/// 128 KiB with mmap and returns them on free, so every op's output starts as fresh pages
/// the kernel must zero: that was ~40% of the run time of a batched backward pass. Raising
/// the mmap threshold to glibc's maximum (32 MiB) and never trimming the heap lets freed
/// buffers be reused.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// candle runs element-wise ops on its own pool of spinning threads. The build already keeps
/// both cores busy with model × image pairs (and matrix products use rayon), so those
/// threads only spin against the work: with them, EfficientNet-Lite0's forward + backward
/// took about twice as long. Set `CANDLE_NUM_THREADS` to override.
fn tune_candle_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

fn main() -> ExitCode {
    tune_candle_threads();
    tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build {
            config,
            output,
            cache,
            no_cache,
            shard,
            publish,
        } => build(&config, output, BuildOptions { cache, no_cache, shard, background_cleanup: false }, &publish),
        Command::Serve {
            config,
            output,
            cache,
            port,
            bind,
            publish,
        } => serve(config, output, cache, port, bind, &publish),
        Command::Init { dir } => cnnscope::init::init(&dir).map(|files| {
            eprintln!(
                "wrote a new gallery ({} files) into {}; build it with `cnnscope build -c {}`, or serve it with `cnnscope serve -c {}`",
                files.len(),
                dir.display(),
                dir.join("gallery.yaml").display(),
                dir.join("gallery.yaml").display()
            )
        }),
        Command::Cache { action } => cache_command(action),
        Command::Check {
            config,
            cache,
            no_links,
        } => check(&config, cache, no_links),
        Command::Bench { weights, repeat, only } => {
            println!(
                "median of {} runs, {} threads",
                repeat.max(1),
                rayon::current_num_threads()
            );
            // On a worker of the pool, as the build's methods run: an op's split then
            // shares the work with the other workers instead of parking this thread.
            rayon::scope(|_| cnnscope::bench::run(&weights, repeat.max(1), only.as_deref(), &|l| println!("{l}")))
                .map(|_| ())
        }
        Command::Train {
            arch,
            data,
            out,
            log,
            epochs,
            seed,
            train_size,
            test_size,
            batch_size,
            lr,
        } => {
            if arch != "lenet5" {
                Err(cnnscope::Error::msg(format!(
                    "cannot train `{arch}`: only `lenet5` can be trained"
                )))
            } else {
                let opts = TrainOptions {
                    data,
                    out,
                    log,
                    epochs,
                    seed,
                    train_size,
                    test_size,
                    batch_size,
                    lr,
                };
                eprintln!(
                    "training lenet5 on digits 0..{} of {}, evaluating on the last {} (seed {})",
                    opts.train_size,
                    opts.data.display(),
                    opts.test_size,
                    opts.seed
                );
                train_lenet5(&opts, |e| {
                    eprintln!(
                        "epoch {:>3}: train loss {:.4} acc {:.2}% | held-out loss {:.4} acc {:.2}%",
                        e.epoch,
                        e.train_loss,
                        100.0 * e.train_accuracy,
                        e.test_loss,
                        100.0 * e.test_accuracy
                    )
                })
                .map(|log| {
                    eprintln!(
                        "wrote {} and {} ({:.2}% held-out accuracy, {:.1} s)",
                        opts.out.display(),
                        opts.log_path().display(),
                        100.0 * log.test_accuracy,
                        log.seconds
                    )
                })
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
