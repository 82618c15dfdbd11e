//! Datasets and unit analyses end to end: a fixture site with LeNet-5 over held-out digits,
//! its pages and manifest entries; dataset, units and figure errors; and the numbers the
//! grandmother-neuron note quotes, against the gallery's own analysis.

mod common;

use std::path::Path;

use cnnscope::build::Site;
use serde_json::Value;

const MNIST: &str = "data/mnist";

/// The fixture site with a dataset of `limit` held-out digits and `units` for LeNet-5.
fn site_with_units(limit: usize, units: &str) -> tempfile::TempDir {
    let dir = common::fixture("basic");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for f in ["mnist-10k-images-idx3-ubyte.gz", "mnist-10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(common::repo().join(MNIST).join(f), data.join(f)).unwrap();
    }
    let cfg = dir.path().join("gallery.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text.replacen(
        "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n",
        &format!("    input: {{ size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }}\n{units}"),
        1,
    );
    let datasets = format!(
        "datasets:\n  - id: held-out\n    kind: idx\n    images: data/mnist-10k-images-idx3-ubyte.gz\n    labels: data/mnist-10k-labels-idx1-ubyte.gz\n    offset: 8000\n    limit: {limit}\n"
    );
    std::fs::write(&cfg, format!("{text}{datasets}")).unwrap();
    dir
}

const UNITS: &str = "    units:\n      dataset: held-out\n      layers: [relu1, relu4]\n      embedding: { layers: [relu4], perplexity: 10 }\n      directions: { layer: relu4, count: 20, seed: 3 }\n";

fn build(dir: &Path) -> (std::path::PathBuf, Value) {
    let site = Site::load(&dir.join("gallery.yaml")).expect("fixture loads");
    let out = dir.join("public");
    site.build(&out, &|_| {}).expect("fixture builds");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    (out, m)
}

use common::{assert_has, load_err};

fn artifacts<'a>(m: &'a Value, kind: &str) -> Vec<&'a Value> {
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

#[test]
fn unit_pages_and_the_export_contract() {
    let dir = site_with_units(300, UNITS);
    let (out, m) = build(dir.path());
    let units = artifacts(&m, "unit");
    // relu1's 6 channels and relu4's 84 units.
    assert_eq!(units.len(), 6 + 84);
    for u in &units {
        assert_eq!(u["model"], "lenet");
        assert_eq!(u["dataset"], "held-out");
        let top = u["top"].as_array().unwrap();
        assert!(top.len() >= 9 && top.iter().all(|i| i.as_u64().unwrap() < 300));
        let s = u["selectivity"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&s), "{s}");
        assert_eq!(u["class_means"].as_array().unwrap().len(), 10);
        let page = format!(
            "models/lenet/layers/{}/units/{}/index.html",
            u["layer"].as_str().unwrap(),
            u["unit"]
        );
        assert!(out.join(&page).is_file(), "{page}");
        assert!(out.join(u["png"].as_str().unwrap()).is_file());
    }
    // Top examples are best first: the scores array says so.
    let tsne = artifacts(&m, "tsne");
    assert_eq!(tsne.len(), 1);
    let npy = std::fs::read(out.join(tsne[0]["npy"].as_str().unwrap())).unwrap();
    assert!(String::from_utf8_lossy(&npy[..128]).contains("'shape': (300, 2)"));
    let d = &artifacts(&m, "directions")[0];
    assert_eq!(d["layer"], "relu4");
    assert_eq!(d["purity_units"].as_array().unwrap().len(), 84);
    assert_eq!(d["purity_directions"].as_array().unwrap().len(), 20);
    // Dead units have no purity.
    let dead = units
        .iter()
        .filter(|u| {
            u["layer"] == "relu4"
                && u["class_means"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|v| v.as_f64() == Some(0.0))
        })
        .count();
    assert!(dead > 0);
    assert_eq!(
        d["purity_units"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p.is_null())
            .count(),
        dead
    );
    let a = &artifacts(&m, "ablation")[0];
    assert_eq!(a["k"], serde_json::json!([1, 2, 4, 8, 16]));
    assert_eq!(a["accuracy_units"].as_array().unwrap().len(), 5);
    // The pages link each other.
    let layer = std::fs::read_to_string(out.join("models/lenet/layers/relu4/index.html")).unwrap();
    assert!(
        layer.contains(&format!("<strong>{dead} of 84 units are dead</strong>")),
        "dead count on the layer page"
    );
    assert!(
        layer.contains("units/0/index.html")
            && layer.contains("embedding/index.html")
            && layer.contains("directions/index.html")
    );
    let model = std::fs::read_to_string(out.join("models/lenet/index.html")).unwrap();
    assert!(model.contains("layers/relu1/index.html"));
    let unit = std::fs::read_to_string(out.join("models/lenet/layers/relu1/units/2/index.html")).unwrap();
    assert!(
        unit.contains("filter.png") && unit.contains("context.png"),
        "first-layer units show their filter and crops"
    );
    assert!(out.join("models/lenet/layers/relu4/directions/index.html").is_file());
}

#[test]
fn the_analyses_are_cached_and_reproducible() {
    let dir = site_with_units(300, UNITS);
    let (_, first) = build(dir.path());
    let site = Site::load(&dir.path().join("gallery.yaml")).unwrap();
    let report = site.build(&dir.path().join("public"), &|_| {}).unwrap();
    assert_eq!(report.computed, 0, "a second build reuses every entry");
    // A fresh cache gives the same numbers (t-SNE included: it is seeded and serial).
    std::fs::remove_dir_all(dir.path().join(".cnnscope-cache")).unwrap();
    let (_, second) = build(dir.path());
    let pick = |m: &Value| -> Vec<Value> {
        m["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| ["unit", "tsne", "directions", "ablation"].contains(&a["kind"].as_str().unwrap()))
            .cloned()
            .collect()
    };
    assert_eq!(pick(&first), pick(&second));
}

#[test]
fn dataset_and_units_errors_name_the_key_and_line() {
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "    units:\n      dataset: nope\n",
            "",
            vec!["models[0].units.dataset", "unknown dataset `nope`", "held-out"],
        ),
        (
            "    units:\n      dataset: held-out\n      layers: [relu9]\n",
            "",
            vec!["models[0].units.layers[0]", "no layer `relu9`", "gallery.yaml:13:"],
        ),
        (
            "    units:\n      dataset: held-out\n      top: 0\n",
            "",
            vec!["models[0].units.top", "between 1 and 100"],
        ),
        (
            "    units:\n      dataset: held-out\n      embedding: { layers: [relu4], perplexity: 400 }\n",
            "",
            vec!["units.embedding.perplexity", "too large"],
        ),
        (
            "    units:\n      dataset: held-out\n      directions: { layer: fc9 }\n",
            "",
            vec!["units.directions.layer", "no layer `fc9`"],
        ),
        (
            "",
            "    kind: csv\n",
            vec!["datasets[0].kind", "unknown dataset kind `csv`", "idx, folder"],
        ),
        (
            "",
            "    offset: 99999\n",
            vec!["datasets[0].offset", "only 10000 examples"],
        ),
    ];
    for (units, extra, want) in cases {
        let dir = site_with_units(300, units);
        let cfg = dir.path().join("gallery.yaml");
        if !extra.is_empty() {
            let text = std::fs::read_to_string(&cfg).unwrap();
            let key = extra.split(':').next().unwrap();
            let text = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{key}:")))
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&cfg, format!("{text}\n{extra}")).unwrap();
        }
        let e = match Site::load(&cfg) {
            Ok(_) => panic!("loaded, but should have failed: {units:?} {extra:?}"),
            Err(e) => e.to_string(),
        };
        assert_has(&e, &want);
        assert!(e.contains("gallery.yaml"), "{e}");
    }
}

#[test]
fn folder_datasets_and_their_errors() {
    let dir = site_with_units(300, "    units:\n      dataset: folder\n      layers: [relu4]\n");
    let cfg = dir.path().join("gallery.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}  - id: folder\n    kind: folder\n    images: digits\n"),
    )
    .unwrap();
    let digits = dir.path().join("digits");
    // An empty folder.
    std::fs::create_dir_all(&digits).unwrap();
    assert_has(&load_err(&cfg), &["datasets[1].images", "holds no PNG or JPEG"]);
    // Sub-folders that are not classes.
    std::fs::create_dir_all(digits.join("tree")).unwrap();
    std::fs::copy(
        common::repo().join("content/images/three.png"),
        digits.join("tree/a.png"),
    )
    .unwrap();
    assert_has(
        &load_err(&cfg),
        &["models[0].units.dataset", "sub-folder `tree`", "not a class"],
    );
    // Labelled by class name, one upscaled (resized to 28×28 like `images:`).
    std::fs::remove_dir_all(digits.join("tree")).unwrap();
    for (class, file) in [("3", "three.png"), ("7", "seven.png"), ("1", "one.png")] {
        std::fs::create_dir_all(digits.join(class)).unwrap();
        std::fs::copy(
            common::repo().join("content/images").join(file),
            digits.join(class).join(file),
        )
        .unwrap();
    }
    image::open(common::repo().join("content/images/seven.png"))
        .unwrap()
        .resize_exact(56, 56, image::imageops::FilterType::Nearest)
        .save(digits.join("7/big.png"))
        .unwrap();
    // A corrupt file is named.
    std::fs::write(digits.join("7/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    assert_has(&load_err(&cfg), &["broken.png", "cannot read the image"]);
    std::fs::remove_file(digits.join("7/broken.png")).unwrap();
    let (_, m) = build(dir.path());
    let units = artifacts(&m, "unit");
    assert_eq!(units.len(), 84);
    assert!(units
        .iter()
        .all(|u| u["dataset"] == "folder" && u["top"].as_array().unwrap().len() == 4));
    // Class means of the classes present only; absent classes are null.
    let cm = units[0]["class_means"].as_array().unwrap();
    assert!(cm[0].is_null() && !cm[3].is_null());
}

#[test]
fn figures_in_notes_resolve_or_fail_with_the_line() {
    let units = "    units:\n      dataset: held-out\n      layers: [relu4]\n      embedding: { layers: [relu4], perplexity: 10 }\n";
    let dir = site_with_units(200, units);
    let note = dir.path().join("content/figures.md");
    std::fs::write(
        &note,
        "# Figures\n\n{{ figure(model=\"lenet\", layer=\"relu4\", unit=5) }}\n\n{{ figure(model=\"lenet\", layer=\"relu4\", view=\"tsne\") }}\n\n{{ figure(model=\"lenet\", image=\"three\", method=\"gradcam\", target=\"predicted\") }}\n\nIn code: `{{ figure(model=\"x\") }}`\n",
    )
    .unwrap();
    let (out, _) = build(dir.path());
    let html = std::fs::read_to_string(out.join("notes/figures/index.html")).unwrap();
    assert!(
        html.contains("../../models/lenet/layers/relu4/files/units/5/top.png"),
        "unit figure"
    );
    assert!(html.contains("../../models/lenet/layers/relu4/units/5/index.html"));
    assert!(
        html.contains("<svg") && html.contains("embedding/index.html"),
        "t-SNE figure"
    );
    assert!(
        html.contains("models/lenet/images/three/attributions/index.html"),
        "map figure"
    );
    assert!(
        html.contains("{{ figure(model=&quot;x&quot;) }}") || html.contains("{{ figure(model=\"x\") }}"),
        "code is left alone"
    );
    assert!(!html.contains("CNNSCOPEFIGURE"));
    for (figure, want) in [
        ("{{ figure(model=\"nope\", layer=\"relu4\") }}", vec!["no model `nope`"]),
        (
            "{{ figure(model=\"lenet\", layer=\"relu4\", unit=84) }}",
            vec!["84 units", "not unit 84"],
        ),
        (
            "{{ figure(model=\"lenet\", layer=\"relu2\") }}",
            vec!["layer `relu2`", "not among its analysed layers"],
        ),
        (
            "{{ figure(model=\"lenet\", layer=\"relu4\", view=\"purity\") }}",
            vec!["directions layer"],
        ),
        (
            "{{ figure(model=\"lenet\", image=\"zebra\") }}",
            vec!["no image `zebra`"],
        ),
        (
            "{{ figure(model=\"lenet\", image=\"three\", method=\"magic\") }}",
            vec!["draws no map with `magic`"],
        ),
        (
            "{{ figure(model=\"lenet\", colour=\"red\") }}",
            vec!["unknown argument `colour`"],
        ),
        (
            "{{ figure(model=\"lenet\", layer=\"relu4\" }}",
            vec!["expected `figure("],
        ),
    ] {
        std::fs::write(&note, format!("---\ntitle: T\n---\n\nText\n\n{figure}\n")).unwrap();
        let e = load_err(&dir.path().join("gallery.yaml"));
        let mut want = want;
        want.extend(["figures.md:7:"]);
        assert_has(&e, &want);
    }
    // A target the image does not have fails the build, naming the note and line.
    std::fs::write(
        &note,
        "{{ figure(model=\"lenet\", image=\"three\", method=\"saliency\", target=\"giraffe\") }}\n",
    )
    .unwrap();
    let site = Site::load(&dir.path().join("gallery.yaml")).unwrap();
    let e = site
        .build(&dir.path().join("public2"), &|_| {})
        .expect_err("unknown target fails")
        .to_string();
    assert_has(&e, &["figures.md:1:", "target `giraffe`"]);
    assert!(!dir.path().join("public2").exists(), "no output from a failed build");
}

/// The numbers `content/grandmother-neuron.md` quotes are those the gallery computes
/// (`bench/units.yaml` is the default gallery's LeNet-5 analysis).
#[test]
fn the_grandmother_neuron_note_quotes_the_gallerys_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::load(&common::repo().join("bench/units.yaml")).unwrap();
    let out = dir.path().join("site");
    site.build_with(
        &out,
        &cnnscope::build::BuildOptions {
            no_cache: true,
            ..Default::default()
        },
        &|_| {},
    )
    .unwrap();
    let m: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let note = std::fs::read_to_string(common::repo().join("content/grandmother-neuron.md")).unwrap();
    let note = note.split_whitespace().collect::<Vec<_>>().join(" ");
    let units = artifacts(&m, "unit");
    let live = |layer: &str| -> Vec<f64> {
        units
            .iter()
            .filter(|u| {
                u["layer"] == layer
                    && !u["class_means"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|v| v.as_f64() == Some(0.0))
            })
            .map(|u| u["selectivity"].as_f64().unwrap())
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let dead = |layer: &str, n: usize| n - live(layer).len();
    let mut quoted = vec![
        format!("**{:.3}**", mean(&live("relu3"))),
        format!("**{:.3}**", mean(&live("relu4"))),
        format!("**{:.3}**", mean(&live("relu1"))),
        format!("**{:.3}**", mean(&live("relu2"))),
        format!(
            "Thirteen of the 84 units of `relu4` (and {} of the 120 of `relu3`)",
            dead("relu3", 120)
        ),
        format!("for the {} live units", live("relu4").len()),
    ];
    assert_eq!(dead("relu4", 84), 13);
    let d = &artifacts(&m, "directions")[0];
    let pu: Vec<f64> = d["purity_units"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let pd: Vec<f64> = d["purity_directions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    quoted.push(format!("**{:.0}%** for the", 100.0 * mean(&pu)));
    quoted.push(format!("**{:.0}%** for the random", 100.0 * mean(&pd)));
    let t = artifacts(&m, "tsne");
    let knn = |layer: &str| {
        t.iter().find(|a| a["layer"] == layer).unwrap()["knn_accuracy"]
            .as_f64()
            .unwrap()
    };
    quoted.push(format!("**{:.1}%** of the time", 100.0 * knn("relu4")));
    quoted.push(format!("**{:.1}%**: depth", 100.0 * knn("pool1")));
    let a = &artifacts(&m, "ablation")[0];
    let at = |key: &str, k: u64| {
        let i = a["k"]
            .as_array()
            .unwrap()
            .iter()
            .position(|v| v.as_u64() == Some(k))
            .unwrap();
        100.0 * a[key][i].as_f64().unwrap()
    };
    quoted.push(format!("**{:.1}%** with 32 zeroed", at("accuracy_units", 32)));
    quoted.push(format!("**{:.1}%** with 32 removed", at("accuracy_directions", 32)));
    // The range of one draw, from the directions page's table: `93.9% (82.9–97.2%)`.
    let page = std::fs::read_to_string(out.join("models/lenet-mnist/layers/relu4/directions/index.html")).unwrap();
    let row = page.split("<tr><td>32</td>").nth(1).unwrap();
    let cell = row.split("<td>").nth(2).unwrap();
    let range = cell.split('(').nth(1).unwrap().split('%').next().unwrap();
    let (lo, hi) = range.split_once('–').unwrap();
    let r = |v: &str| v.parse::<f64>().unwrap().round();
    quoted.push(format!("anywhere from {}% to {}%", r(lo), r(hi)));
    for q in quoted {
        assert!(note.contains(&q), "the note does not quote `{q}`");
    }
}

#[test]
fn idx_images_must_fit_the_model() {
    let dir = site_with_units(300, "    units:\n      dataset: small\n");
    let cfg = dir.path().join("gallery.yaml");
    // Five 14×14 images.
    let mut idx = vec![0u8, 0, 8, 3];
    for d in [5u32, 14, 14] {
        idx.extend(d.to_be_bytes());
    }
    idx.extend(vec![128u8; 5 * 14 * 14]);
    std::fs::write(dir.path().join("data/small-idx3-ubyte"), idx).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}  - id: small\n    kind: idx\n    images: data/small-idx3-ubyte\n"),
    )
    .unwrap();
    assert_has(
        &load_err(&cfg),
        &["models[0].units.dataset", "are 14×14", "takes 28×28"],
    );
}
