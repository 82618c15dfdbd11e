//! The faithfulness metrics: deletion and insertion against a model whose attribution is
//! known, the randomisation test on the trained LeNet-5, and the metrics through a build.

mod common;

use candle_core::Tensor;
use cnnscope::build::{BuildOptions, Site};
use cnnscope::metrics::deletion::{auc, curve, order};
use serde_json::Value;

/// A linear score `Σ wᵢxᵢ / Σ wᵢ` over 16 pixels: with every pixel 1, pixel `i`'s true
/// attribution is `wᵢ`, and the best order to remove pixels is by decreasing weight.
fn linear() -> (Vec<f32>, impl Fn(&Tensor) -> cnnscope::Result<Vec<f32>> + Sync) {
    let w: Vec<f32> = (0..16).map(|i| ((i * 7) % 16 + 1) as f32).collect();
    let total: f32 = w.iter().sum();
    let wv = w.clone();
    let score = move |batch: &Tensor| {
        let rows = batch.flatten_from(1)?.to_vec2::<f32>()?;
        Ok(rows
            .iter()
            .map(|r| r.iter().zip(&wv).map(|(x, w)| x * w).sum::<f32>() / total)
            .collect())
    };
    (w, score)
}

#[test]
fn deletion_and_insertion_of_a_linear_model_have_their_extreme_areas() {
    let (w, score) = linear();
    let ones = vec![1f32; 16];
    let zeros = vec![0f32; 16];
    let dims = (1, 4, 4);
    let best = order(&w);
    let worst: Vec<usize> = best.iter().rev().copied().collect();
    let steps = 16;
    let del = |o: &[usize]| auc(&curve(&score, &ones, &zeros, dims, o, steps).unwrap());
    let ins = |o: &[usize]| auc(&curve(&score, &zeros, &ones, dims, o, steps).unwrap());
    // The exact areas of the best order: after k pixels the score is the rest's share.
    let mut sorted = w.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f32 = w.iter().sum();
    let remaining: Vec<f32> = (0..=16).map(|k| sorted[k..].iter().sum::<f32>() / total).collect();
    let expected = auc(&remaining);
    assert!((del(&best) - expected).abs() < 1e-6, "{} vs {expected}", del(&best));
    assert!((ins(&best) - (1.0 - expected)).abs() < 1e-6);
    // No order does better than the true one, none worse than its reverse.
    let mut rng = 12345u64;
    for _ in 0..20 {
        let mut o: Vec<usize> = (0..16).collect();
        for i in (1..16).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            o.swap(i, (rng >> 33) as usize % (i + 1));
        }
        assert!(del(&best) <= del(&o) + 1e-9 && del(&o) <= del(&worst) + 1e-9);
        assert!(ins(&best) + 1e-9 >= ins(&o) && ins(&o) + 1e-9 >= ins(&worst));
    }
    assert!(del(&worst) - del(&best) > 0.2, "the test separates the orders");
    // Steps that do not divide the pixels leave the remainder in place, as RISE does.
    let c = curve(&score, &ones, &zeros, dims, &best, 5).unwrap();
    assert_eq!(c.len(), 6);
    assert!(c[5] > 0.0, "16 pixels in 5 steps of 3: one pixel stays");
}

/// The fixture site with `extra` after the model's input line.
fn fixture_with(extra: &str) -> tempfile::TempDir {
    let dir = common::fixture("basic");
    let line = "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n";
    common::edit_config(dir.path(), line, &format!("{line}{extra}"));
    dir
}

fn build(dir: &std::path::Path) -> Value {
    let site = Site::load(&dir.join("gallery.yaml")).unwrap();
    let out = dir.join("public");
    let opts = BuildOptions {
        cache: Some(dir.join("cache")),
        ..Default::default()
    };
    site.build_with(&out, &opts, &|_| {}).unwrap();
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

fn of<'a>(m: &'a Value, kind: &str) -> Vec<&'a Value> {
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .collect()
}

const METRICS: &str = "    methods: [{ name: saliency }, { name: guided-backprop }, { name: gradcam }, { name: occlusion }]\n    metrics:\n      faithfulness: { steps: 28 }\n      randomisation: { methods: [saliency, guided-backprop, gradcam], seed: SEED }\n";

#[test]
fn metrics_in_the_manifest_and_on_the_pages() {
    let dir = fixture_with(&METRICS.replace("SEED", "0"));
    let m = build(dir.path());
    let faith = of(&m, "faithfulness");
    // Four map methods × (predicted, runner-up, label where it differs) × two images.
    let cells = of(&m, "attribution").len();
    assert_eq!(faith.len(), cells);
    for a in &faith {
        for key in [
            "model",
            "image",
            "method",
            "target",
            "deletion_auc",
            "insertion_auc",
            "deletion",
            "insertion",
        ] {
            assert!(!a[key].is_null(), "faithfulness artifact lacks `{key}`: {a}");
        }
        assert_eq!(a["deletion"].as_array().unwrap().len(), 29);
        let d = a["deletion_auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&d));
        // Deletion starts at the image's own probability and ends at the mean image's.
        assert!(a["deletion"][0].as_f64().unwrap() > a["deletion"][28].as_f64().unwrap() - 1e-6 || d < 0.5);
    }
    let rand = of(&m, "randomisation");
    assert_eq!(rand.len(), 3 * 2, "three methods × two images");
    for a in &rand {
        let ck: Vec<&str> = a["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            ck,
            ["fc3", "fc2", "fc1", "conv2", "conv1"],
            "lenet5's default checkpoints"
        );
        let rho: Vec<f64> = a["spearman"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(rho.len(), 5);
        assert!(rho.iter().all(|r| r.is_finite() && r.abs() <= 1.0 + 1e-9), "{rho:?}");
        if a["method"] == "saliency" {
            // Every layer randomised: the gradient no longer looks like the trained one's.
            assert!(rho[4].abs() < 0.5, "saliency after randomising every layer: {rho:?}");
        }
    }
    let out = dir.path().join("public");
    let board = std::fs::read_to_string(out.join("models/lenet/leaderboard/index.html")).unwrap();
    for title in [
        "Saliency",
        "Guided backprop",
        "Grad-CAM",
        "Occlusion",
        "Deletion",
        "Insertion",
    ] {
        assert!(board.contains(title), "leaderboard lacks {title}");
    }
    let page = std::fs::read_to_string(out.join("models/lenet/images/three/randomisation/index.html")).unwrap();
    assert!(page.contains("ρ = ") && page.contains("<code>conv1</code>"));
    let matrix = std::fs::read_to_string(out.join("models/lenet/images/three/attributions/index.html")).unwrap();
    assert!(
        matrix.contains("deletion ") && matrix.contains("<svg"),
        "curves in the matrix"
    );
    let model = std::fs::read_to_string(out.join("models/lenet/index.html")).unwrap();
    assert!(model.contains("leaderboard/index.html"));

    // Cached: a second build computes nothing, and the numbers are the same.
    let again = build(dir.path());
    assert_eq!(of(&again, "faithfulness"), faith);
    assert_eq!(of(&again, "randomisation"), rand);
}

#[test]
fn the_randomisation_is_seeded() {
    let spearman = |seed: &str| -> Vec<Value> {
        let dir = fixture_with(
            &METRICS
                .replace("SEED", seed)
                .replace("faithfulness: { steps: 28 }\n      ", ""),
        );
        let m = build(dir.path());
        of(&m, "randomisation").iter().map(|a| a["spearman"].clone()).collect()
    };
    let a = spearman("3");
    assert_eq!(a, spearman("3"), "the same seed gives the same test");
    assert_ne!(a, spearman("4"), "another seed, other random weights");
}

fn load_err(extra: &str) -> String {
    let dir = fixture_with(extra);
    match Site::load(&dir.path().join("gallery.yaml")) {
        Ok(_) => panic!("loaded with {extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn metric_config_errors_name_their_key_and_line() {
    let cases: [(&str, &[&str]); 5] = [
        (
            "    metrics:\n      faithfulness: { steps: 0 }\n",
            &[
                "gallery.yaml:12:",
                "models[0].metrics.faithfulness.steps",
                "between 1 and 784",
            ],
        ),
        (
            "    metrics:\n      faithfulness:\n        methods: [saliency, lime]\n",
            &[
                "gallery.yaml:13:",
                "models[0].metrics.faithfulness.methods[1]",
                "`lime` is not among the model's methods",
            ],
        ),
        (
            "    metrics:\n      randomisation:\n        methods: [activation-gradients]\n",
            &["gallery.yaml:13:", "randomisation.methods[0]", "draws no map"],
        ),
        (
            "    metrics:\n      randomisation:\n        checkpoints: [fc3, conv9]\n",
            &[
                "gallery.yaml:13:",
                "models[0].metrics.randomisation.checkpoints[1]",
                "`conv9` names no convolution",
            ],
        ),
        (
            "    metrics:\n      randomisation:\n        checkpoints: [conv1, fc3]\n",
            &["gallery.yaml:13:", "checkpoints[1]", "from the output down"],
        ),
    ];
    for (extra, parts) in cases {
        let e = load_err(extra);
        for p in parts {
            assert!(e.contains(p), "error lacks `{p}`:\n{e}");
        }
    }
    let e = load_err("    metrics:\n      faithfulness: { stepz: 3 }\n");
    assert!(e.contains("unknown field `stepz`") && e.contains("line 12"), "{e}");
}
