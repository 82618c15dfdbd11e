//! The artifact cache, byte-identical rebuilds and sharded builds, on the fixture site
//! (LeNet-5 with every method on two digits).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cnnscope::build::{BuildOptions, BuildReport, Site};
use cnnscope::plan::Shard;
use serde_json::Value;

fn build(cfg: &Path, out: &Path, opts: BuildOptions) -> BuildReport {
    let site = Site::load(cfg).expect("fixture loads");
    site.build_with(out, &opts, &|_| {}).expect("fixture builds")
}

fn with_cache(dir: &Path) -> BuildOptions {
    BuildOptions {
        cache: Some(dir.to_path_buf()),
        ..Default::default()
    }
}

/// Every file under `root`: relative path → bytes.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().to_string();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    let names = |t: &BTreeMap<String, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&ta), names(&tb), "same files");
    for (k, v) in &ta {
        assert!(&tb[k] == v, "{k} differs between {} and {}", a.display(), b.display());
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if !dest.exists() {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn manifest(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn a_note_edit_reuses_every_artifact_and_a_parameter_change_recomputes_only_its_method() {
    let dir = common::fixture("basic");
    let cfg = dir.path().join("gallery.yaml");
    let cache = dir.path().join("cache");
    let out = dir.path().join("public");

    let cold = build(&cfg, &out, with_cache(&cache));
    assert!(cold.computed > 0);
    assert_eq!(cold.reused, 0);
    let before = tree(&out);

    // A note edit: nothing computed, every entry reused, only that note's page (and the
    // search index of the pages' text) changes.
    let note = dir.path().join("content/first.md");
    let text = std::fs::read_to_string(&note).unwrap();
    std::fs::write(&note, format!("{text}\nAn added sentence.\n")).unwrap();
    let warm = build(&cfg, &out, with_cache(&cache));
    assert_eq!(warm.computed, 0, "a note edit evaluates no model");
    assert_eq!(warm.reused, cold.computed);
    let after = tree(&out);
    let changed: Vec<&String> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert_eq!(changed, vec!["notes/first/index.html", "search-index.js"]);

    // One method's parameter: only its entries (one per pair and target) are computed.
    let m = manifest(&out);
    let smoothgrad = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["method"] == "smoothgrad")
        .count();
    assert!(smoothgrad >= 2);
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap()
            + "methods:\n  - name: saliency\n  - name: gradient-x-input\n  - name: smoothgrad\n    samples: 7\n  \
               - name: integrated-gradients\n  - name: guided-backprop\n  - name: gradcam\n  - name: gradcam++\n  \
               - name: hirescam\n  - name: layercam\n  - name: occlusion\n  - name: activation-gradients\n  - name: weight-gradients\n",
    )
    .unwrap();
    // Its rows' shared-scale pictures are redrawn too: one per image with several targets.
    let mut targets_per_image = std::collections::BTreeMap::<String, usize>::new();
    for a in m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["method"] == "smoothgrad")
    {
        *targets_per_image
            .entry(a["image"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let rows = targets_per_image.values().filter(|&&n| n > 1).count();
    assert!(rows >= 1);
    let changed = build(&cfg, &out, with_cache(&cache));
    assert_eq!(
        changed.computed,
        smoothgrad + rows,
        "only the SmoothGrad maps and their rows are recomputed"
    );
    assert_eq!(changed.reused, cold.computed - smoothgrad - rows);
    let m = manifest(&out);
    let sg = m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["method"] == "smoothgrad")
        .unwrap();
    assert_eq!(sg["params"]["samples"], 7);

    // gc removes the old SmoothGrad entries (maps and rows) and nothing the config still uses.
    let site = Site::load(&cfg).unwrap();
    let c = cnnscope::cache::Cache::open(&cache).unwrap();
    let keep = site.referenced_keys(&c).unwrap();
    let (removed, _) = c.gc(&keep).unwrap();
    assert_eq!(removed, smoothgrad + rows);
    let again = build(&cfg, &out, with_cache(&cache));
    assert_eq!(again.computed, 0, "gc kept every entry in use");
}

#[test]
fn builds_are_byte_identical_with_and_without_the_cache() {
    let dir = common::fixture("basic");
    let cfg = dir.path().join("gallery.yaml");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let c = dir.path().join("c");
    let fresh = BuildOptions {
        no_cache: true,
        ..Default::default()
    };
    build(&cfg, &a, fresh.clone());
    build(&cfg, &b, fresh);
    assert_same_tree(&a, &b);
    // Through a cache, cold and then warm.
    let cache = dir.path().join("cache");
    build(&cfg, &c, with_cache(&cache));
    assert_same_tree(&a, &c);
    let warm = build(&cfg, &c, with_cache(&cache));
    assert_eq!(warm.computed, 0);
    assert_same_tree(&a, &c);
    assert!(
        !cache.join("tmp").read_dir().unwrap().any(|_| true),
        "no temp entries left"
    );
    // No temporary cache or staging folder is left next to the outputs.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Provenance: the manifest and every page's footer name the inputs' hashes.
    let m = manifest(&a);
    let p = &m["provenance"];
    let config_hash = p["config"]["blake3"].as_str().unwrap();
    assert_eq!(config_hash.len(), 64);
    assert_eq!(
        config_hash,
        cnnscope::cache::hash_file(&cfg).unwrap(),
        "the config's hash is of its bytes"
    );
    assert_eq!(p["config"]["path"], "gallery.yaml", "paths are relative, not absolute");
    assert_eq!(p["images"].as_array().unwrap().len(), 2);
    assert_eq!(p["models"][0]["weights"]["path"], "models/lenet5-mnist.safetensors");
    let home = std::fs::read_to_string(a.join("index.html")).unwrap();
    assert!(home.contains(&config_hash[..12]), "footer shows the config hash");
    let text = std::fs::read_to_string(a.join("manifest.json")).unwrap();
    assert!(
        !text.contains(&dir.path().to_string_lossy().to_string()),
        "no absolute paths"
    );
    for art in m["artifacts"].as_array().unwrap() {
        let npy = art["npy"].as_str().unwrap();
        let bytes = std::fs::read(a.join(npy)).unwrap();
        assert_eq!(art["blake3"], cnnscope::cache::hash_bytes(&bytes), "{npy}");
    }
}

#[test]
fn three_shards_merged_assemble_the_same_site_without_computing() {
    let dir = common::fixture("basic");
    let cfg = dir.path().join("gallery.yaml");
    let single = dir.path().join("single");
    build(&cfg, &single, with_cache(&dir.path().join("single-cache")));

    let merged = dir.path().join("merged-cache");
    let mut computed = 0;
    for k in 1..=3 {
        let cache = dir.path().join(format!("cache-{k}"));
        let out = dir.path().join(format!("never-{k}"));
        let r = build(
            &cfg,
            &out,
            BuildOptions {
                cache: Some(cache.clone()),
                shard: Some(Shard { k, n: 3 }),
                ..Default::default()
            },
        );
        assert!(r.output.is_none() && !out.exists(), "a shard writes no site");
        assert!(r.computed > 0, "shard {k} has work");
        computed += r.computed;
        copy_tree(&cache, &merged);
    }
    let assembled = dir.path().join("assembled");
    let r = build(&cfg, &assembled, with_cache(&merged));
    assert_eq!(r.computed, 0, "the merged cache holds every shard's results");
    // Forward passes are computed by every shard that needs them; everything else once.
    assert!(computed >= r.reused);
    assert_same_tree(&single, &assembled);
}

#[test]
fn a_damaged_entry_is_recomputed() {
    let dir = common::fixture("basic");
    let cfg = dir.path().join("gallery.yaml");
    let cache = dir.path().join("cache");
    let out = dir.path().join("public");
    let cold = build(&cfg, &out, with_cache(&cache));
    // Truncate one entry's entry.json, as an interrupted copy of a cache could.
    let entry: PathBuf = walkdir::WalkDir::new(cache.join("entries"))
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .find(|p| p.file_name().is_some_and(|n| n == "entry.json"))
        .unwrap();
    let mut perm = std::fs::metadata(&entry).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&entry, perm).unwrap();
    std::fs::write(&entry, "{\"kind\":").unwrap();
    let before = tree(&out);
    let r = build(&cfg, &out, with_cache(&cache));
    assert_eq!(r.computed, 1);
    assert_eq!(r.reused, cold.computed - 1);
    assert_eq!(before, tree(&out));
}

#[test]
fn cli_reports_cache_counts_and_rejects_a_bad_shard() {
    let dir = common::fixture("basic");
    let bin = env!("CARGO_BIN_EXE_cnnscope");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (ok, err) = run(&["build"]);
    assert!(ok, "{err}");
    assert!(err.contains("entries computed"), "{err}");
    assert!(
        dir.path().join(".cnnscope-cache/entries").is_dir(),
        "default cache next to the config"
    );
    let (ok, err) = run(&["build"]);
    assert!(ok, "{err}");
    assert!(err.contains("0 entries computed"), "{err}");
    let (ok, err) = run(&["build", "--shard", "4/3"]);
    assert!(!ok);
    assert!(err.contains("4/3") && !err.contains("panicked"), "{err}");
    let (ok, err) = run(&["cache", "gc"]);
    assert!(ok, "{err}");
    assert!(err.contains("removed 0 of"), "{err}");
    let (ok, err) = run(&["build", "--no-cache", "--output", "fresh"]);
    assert!(ok && err.contains("0 reused"), "{err}");
}

#[test]
fn a_killed_build_leaves_whole_entries_and_the_previous_site() {
    let dir = common::fixture("basic");
    let bin = env!("CARGO_BIN_EXE_cnnscope");
    let cfg = dir.path().join("gallery.yaml");
    let out = dir.path().join("public");
    // A previous site, built with one method into another cache.
    let saliency_only = dir.path().join("saliency.yaml");
    std::fs::write(
        &saliency_only,
        std::fs::read_to_string(&cfg).unwrap() + "methods:\n  - name: saliency\n",
    )
    .unwrap();
    build(&saliency_only, &out, with_cache(&dir.path().join("other")));
    let previous = tree(&out);

    let cache = dir.path().join(".cnnscope-cache");
    let entries = |c: &Path| {
        walkdir::WalkDir::new(c.join("entries"))
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .count()
    };
    let mut child = std::process::Command::new(bin)
        .args(["build", "--output", "public"])
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while entries(&cache) < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be killed"
        );
        assert!(started.elapsed().as_secs() < 120);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(previous, tree(&out), "the previous site is untouched");
    let c = cnnscope::cache::Cache::open(&cache).unwrap();
    for e in walkdir::WalkDir::new(cache.join("entries")).min_depth(2).max_depth(2) {
        let key = e.unwrap().file_name().to_string_lossy().to_string();
        assert!(c.get(&key).is_some(), "entry {key} is whole");
    }
    let kept = entries(&cache);
    let r = build(&cfg, &out, with_cache(&cache));
    assert_eq!(r.reused, kept, "the next build reuses what the killed one finished");
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("staging"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the killed build's staging folder is cleaned up: {leftovers:?}"
    );
}
