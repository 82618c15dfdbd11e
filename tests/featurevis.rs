//! Feature visualization end to end on the trained LeNet-5: the export contract, the
//! objective rising, determinism, the cache recomputing only what changed, the objective
//! re-measured from the exported image, and config errors with their key and line.

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use cnnscope::analysis::featurevis::{optimise, Follow, Kind, Normalise, Settings, Transforms};
use cnnscope::build::Site;
use cnnscope::models::{self, forward_to, InputSpec, Tap};
use serde_json::Value;

use common::{assert_has, load_err};

/// A site with LeNet-5, no images and no methods, and this `feature_visualization` section.
fn site(fv: &str) -> tempfile::TempDir {
    let dir = common::fixture("basic");
    let text = format!(
        "site: {{ title: fv }}\nmodels:\n  - id: lenet\n    arch: lenet5\n    weights: models/lenet5-mnist.safetensors\n    classes: classes.txt\n    input: {{ size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }}\n    methods: []\n{fv}"
    );
    common::write_config(dir.path(), &text);
    dir
}

fn build(dir: &Path) -> (cnnscope::build::BuildReport, Value) {
    let site = Site::load(&dir.join("gallery.yaml")).expect("fixture loads");
    let out = dir.join("public");
    let r = site.build(&out, &|_| {}).expect("fixture builds");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    (r, m)
}

fn fv_artifacts(m: &Value) -> Vec<&Value> {
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "feature-visualization")
        .collect()
}

/// A little-endian f32 `.npy` (version 1): its shape and values.
fn read_npy(b: &[u8]) -> (Vec<usize>, Vec<f32>) {
    assert_eq!(&b[..6], b"\x93NUMPY");
    let len = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    let shape = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = b[10 + len..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, data)
}

fn lenet() -> models::LoadedModel {
    let spec = InputSpec {
        height: 28,
        width: 28,
        channels: 1,
    };
    let arch = models::architecture("lenet5").unwrap();
    models::load(arch, &common::repo().join("models/lenet5-mnist.safetensors"), &spec, 10).unwrap()
}

fn settings(steps: usize, seed: u64) -> Settings {
    Settings {
        size: 28,
        steps,
        lr: 0.05,
        seed,
        kind: Kind::Fft { decay: 1.0 },
        decorrelate: false,
        transforms: Transforms::small(),
        negative: false,
        images: 1,
        diversity: 0.0,
        offset: -3.0,
        l2: 0.0,
    }
}

const NORM: Normalise = Normalise {
    mean: &[0.1307],
    std: &[0.3081],
};

const FV: &str = "    feature_visualization:\n      steps: 48\n      layers:\n        - { layer: relu2, units: 0-1 }\n        - { layer: fc3, units: [3, 7] }\n";

#[test]
fn pages_and_the_export_contract() {
    let dir = site(FV);
    let (_, m) = build(dir.path());
    let out = dir.path().join("public");
    let arts = fv_artifacts(&m);
    assert_eq!(arts.len(), 4);
    let lm = lenet();
    for a in &arts {
        let keys: Vec<&str> = a.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in ["kind", "model", "layer", "unit", "png", "npy", "objective"] {
            assert!(keys.contains(&k), "{a}: no `{k}`");
        }
        assert_eq!(a["model"], "lenet");
        assert!(out.join(a["png"].as_str().unwrap()).is_file());
        let bytes = std::fs::read(out.join(a["npy"].as_str().unwrap())).unwrap();
        let (shape, data) = read_npy(&bytes);
        assert_eq!(shape, vec![1, 28, 28], "{a}");
        assert!(data.iter().all(|v| (0.0..=1.0).contains(v)));
        // The objective is the unit's mean activation on the exported image.
        let x: Vec<f32> = data.iter().map(|p| (p - 0.1307) / 0.3081).collect();
        let x = Tensor::from_vec(x, (1, 1, 28, 28), &Device::Cpu).unwrap();
        let layer = a["layer"].as_str().unwrap();
        let act = forward_to(lm.model.as_ref(), &x, layer, &mut Tap::default()).unwrap();
        let unit = a["unit"].as_u64().unwrap() as usize;
        let v: f32 = act.narrow(1, unit, 1).unwrap().mean_all().unwrap().to_scalar().unwrap();
        let obj = a["objective"].as_f64().unwrap() as f32;
        assert!((v - obj).abs() < 1e-3 * (1.0 + v.abs()), "{layer}:{unit}: {v} vs {obj}");
        assert!(obj > 0.0, "{layer}:{unit} never turned on");
    }
    // Pages: the glance page, a layer page per listed layer, a unit page per unit, linked
    // from the model page.
    let glance = std::fs::read_to_string(out.join("models/lenet/feature-visualization/index.html")).unwrap();
    assert!(glance.contains("layers/fc3/files/fv/3/0.png"), "{glance}");
    for page in [
        "layers/relu2",
        "layers/fc3",
        "layers/relu2/units/1",
        "layers/fc3/units/7",
    ] {
        let html = std::fs::read_to_string(out.join("models/lenet").join(page).join("index.html")).unwrap();
        assert!(html.contains("fv/"), "{page} shows no picture");
    }
    let unit = std::fs::read_to_string(out.join("models/lenet/layers/fc3/units/7/index.html")).unwrap();
    assert!(unit.contains("<svg"), "no objective chart");
    let model = std::fs::read_to_string(out.join("models/lenet/index.html")).unwrap();
    assert!(model.contains("feature-visualization/index.html"));
}

#[test]
fn the_objective_rises_and_the_result_is_deterministic() {
    let lm = lenet();
    let run = |seed: u64, units: &[usize]| {
        optimise(
            lm.model.as_ref(),
            &NORM,
            1,
            "fc3",
            "fc3",
            Follow::Layer,
            units,
            &settings(64, seed),
            &|_| {},
        )
        .unwrap()
    };
    let a = run(0, &[1, 4, 8]);
    for v in &a {
        let start: f32 = v.curve[..8].iter().sum::<f32>() / 8.0;
        let end: f32 = v.curve[v.curve.len() - 8..].iter().sum::<f32>() / 8.0;
        assert!(end > start + 1.0, "unit {}: {start} → {end}", v.unit);
    }
    // Same seed: the same images, whichever units share the batch; another seed differs.
    let b = run(0, &[4]);
    assert_eq!(a[1].images, b[0].images);
    // The final measurement's matrix product may round differently at another batch size.
    assert!((a[1].objective[0] - b[0].objective[0]).abs() < 1e-4);
    let c = run(1, &[4]);
    assert_ne!(a[1].images, c[0].images);
}

#[test]
fn negative_and_diversity() {
    let lm = lenet();
    let mut s = settings(48, 0);
    s.negative = true;
    let v = optimise(
        lm.model.as_ref(),
        &NORM,
        1,
        "fc3",
        "fc3",
        Follow::Layer,
        &[2],
        &s,
        &|_| {},
    )
    .unwrap();
    assert!(v[0].objective[0] < v[0].curve[0], "{:?}", v[0].objective);
    let mut s = settings(48, 0);
    s.images = 3;
    s.diversity = 100.0;
    let v = optimise(
        lm.model.as_ref(),
        &NORM,
        1,
        "relu2",
        "relu2",
        Follow::Layer,
        &[0],
        &s,
        &|_| {},
    )
    .unwrap();
    assert_eq!(v[0].images.len(), 3);
    assert_ne!(v[0].images[0], v[0].images[1]);
}

#[test]
fn the_cache_recomputes_only_the_changed_entry() {
    let dir = site(FV);
    let (first, m1) = build(dir.path());
    assert!(first.computed >= 4);
    let (again, m2) = build(dir.path());
    assert_eq!(again.computed, 0);
    assert_eq!(fv_artifacts(&m1), fv_artifacts(&m2));
    common::edit_config(
        dir.path(),
        "{ layer: fc3, units: [3, 7] }",
        "{ layer: fc3, units: [3, 7], steps: 40 }",
    );
    let (third, m3) = build(dir.path());
    // The two fc3 units, and nothing else (no images, no methods).
    assert_eq!(third.computed, 2, "{third:?}");
    let relu2 = |m: &Value| -> Vec<Value> {
        fv_artifacts(m)
            .into_iter()
            .filter(|a| a["layer"] == "relu2")
            .cloned()
            .collect()
    };
    assert_eq!(relu2(&m1), relu2(&m3));
}

#[test]
fn config_errors_name_the_key_and_line() {
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "    feature_visualization:\n      layers:\n        - { layer: relu9, units: 0 }\n",
            vec!["gallery.yaml:11:", "feature_visualization.layers[0].layer", "no layer `relu9`"],
        ),
        (
            "    feature_visualization:\n      layers:\n        - { layer: relu2, units: 0-16 }\n",
            vec!["layers[0].units", "unit 16 is out of range", "16 units"],
        ),
        (
            "    feature_visualization:\n      size: 4\n      layers:\n        - { layer: relu2, units: 0 }\n",
            vec!["gallery.yaml:10:", "feature_visualization.size", "between 8 and 512"],
        ),
        (
            "    feature_visualization:\n      layers:\n        - { layer: fc3, units: 0, size: 64 }\n",
            vec!["layers[0].size", "fully connected", "28×28"],
        ),
        (
            "    feature_visualization:\n      layers:\n        - { layer: relu2, units: \"3-1\" }\n",
            vec!["layers[0].units", "runs backwards"],
        ),
        (
            "    feature_visualization:\n      parameterisation: wavelet\n      layers:\n        - { layer: relu2, units: 0 }\n",
            vec!["feature_visualization.parameterisation", "unknown parameterisation `wavelet`", "fft, pixel"],
        ),
        (
            "    feature_visualization:\n      decorrelate: true\n      layers:\n        - { layer: relu2, units: 0 }\n",
            vec!["feature_visualization.decorrelate", "3-channel"],
        ),
        (
            "    feature_visualization:\n      transforms: { spin: 3 }\n      layers:\n        - { layer: relu2, units: 0 }\n",
            vec!["feature_visualization.transforms.spin", "unknown transform `spin`"],
        ),
        (
            "    feature_visualization:\n      layers:\n        - { layer: relu2, units: 0-3 }\n        - { layer: relu2, units: 3, negative: true }\n",
            vec!["layers[1].units", "unit 3 of `relu2` is already listed"],
        ),
        (
            "    feature_visualization:\n      layers: []\n",
            vec!["feature_visualization.layers", "lists no layer"],
        ),
    ];
    for (fv, want) in cases {
        let dir = site(fv);
        let e = load_err(&dir.path().join("gallery.yaml"));
        assert_has(&e, &want);
    }
}

#[test]
fn forward_to_stops_at_the_layer_with_the_same_values() {
    let lm = lenet();
    let x = Tensor::rand(0f32, 1f32, (2, 1, 28, 28), &Device::Cpu).unwrap();
    for layer in ["relu1", "pool2", "fc2", "fc3"] {
        let mut tap = Tap::new(models::Select::Only(vec![layer.into()]), models::Select::None);
        lm.model.forward(&x, &mut tap).unwrap();
        let full = tap.activations.pop().unwrap().1;
        let cut = forward_to(lm.model.as_ref(), &x, layer, &mut Tap::default()).unwrap();
        let d: f32 = (full - cut)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(d, 0.0, "{layer}");
    }
    let e = forward_to(lm.model.as_ref(), &x, "nope", &mut Tap::default()).unwrap_err();
    assert!(e.to_string().contains("never reached layer `nope`"), "{e}");
}

#[test]
fn shards_compute_the_visualizations_once() {
    use cnnscope::build::BuildOptions;
    use cnnscope::plan::Shard;
    let dir = site(FV);
    let cfg = dir.path().join("gallery.yaml");
    let cache = dir.path().join("cache");
    let site = Site::load(&cfg).unwrap();
    let mut computed = 0;
    for k in 1..=2 {
        let opts = BuildOptions {
            cache: Some(cache.clone()),
            shard: Some(Shard { k, n: 2 }),
            ..Default::default()
        };
        computed += site
            .build_with(&dir.path().join("never"), &opts, &|_| {})
            .unwrap()
            .computed;
    }
    assert!(computed >= 4, "{computed}");
    let opts = BuildOptions {
        cache: Some(cache),
        ..Default::default()
    };
    let r = site.build_with(&dir.path().join("public"), &opts, &|_| {}).unwrap();
    assert_eq!(r.computed, 0);
    assert!(dir
        .path()
        .join("public/models/lenet/layers/fc3/files/fv/7/0.npy")
        .is_file());
}
