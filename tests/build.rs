//! Builds the fixture site into a temp folder and checks pages, manifest and arrays.

mod common;

use std::path::Path;

use candle_core::Tensor;
use cnnscope::build::Site;
use serde_json::Value;

fn build(dir: &Path) -> (std::path::PathBuf, Value) {
    let site = Site::load(&dir.join("gallery.yaml")).expect("fixture loads");
    let out = dir.join("public");
    site.build(&out, &|_| {}).expect("fixture builds");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    (out, manifest)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn fixture_site_pages_manifest_and_arrays() {
    let dir = common::fixture("basic");
    let (out, m) = build(dir.path());

    // Pages.
    let home = read(&out.join("index.html"));
    assert!(home.contains("Fixture &lt;site&gt; &amp; co"), "title is escaped");
    assert!(
        home.contains("Welcome to the <strong>fixture</strong>"),
        "index.md is the intro"
    );
    assert!(home.contains("href=\"models/lenet/index.html\""));
    assert!(home.contains("href=\"notes/first/index.html\""));
    let first = home.find("First note from its heading").unwrap();
    let second = home.find("The second note").unwrap();
    assert!(first < second, "notes are ordered by weight");
    let model = read(&out.join("models/lenet/index.html"));
    assert!(model.contains("61706"), "total parameter count");
    for layer in [
        "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2", "relu4", "fc3",
    ] {
        assert!(
            model.contains(&format!("<code>{layer}</code>")),
            "layer {layer} in the table"
        );
    }
    assert!(model.contains("<svg"), "training chart");
    assert!(model.contains("class=\"confusion\""), "confusion matrix");
    assert!(model.contains("href=\"../../static/style.css\""), "relative links");
    let page = read(&out.join("models/lenet/images/three/index.html"));
    assert!(page.contains("True class: <strong>3</strong>"));
    assert!(
        page.contains("A <em>three</em> &lt;b&gt;bold&lt;/b&gt;"),
        "captions are markdown, with raw HTML shown as text"
    );
    assert!(page.contains("src=\"../../../../models/lenet/images/three/activations/conv2.png\""));
    let note = read(&out.join("notes/second/index.html"));
    assert!(
        note.contains("class=\"overridden-note\""),
        "a theme file overrides the default"
    );
    assert!(note.contains("<table>") && note.contains("<del>struck</del>") && note.contains("footnote"));
    assert!(out.join("static/style.css").is_file());

    // Manifest.
    assert_eq!(m["models"][0]["id"], "lenet");
    assert_eq!(m["models"][0]["arch"], "lenet5");
    assert_eq!(m["models"][0]["parameters"], 61706);
    assert_eq!(m["models"][0]["layers"].as_array().unwrap().len(), 11);
    assert_eq!(
        m["models"][0]["layers"][3]["output_shape"],
        serde_json::json!([16, 10, 10])
    );
    let pairs = m["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    let three = &pairs[0];
    assert_eq!(three["image"], "three");
    assert_eq!(three["page"], "models/lenet/images/three/index.html");
    let top5 = three["top5"].as_array().unwrap();
    assert_eq!(top5.len(), 5);
    assert_eq!(top5[0]["index"], 3, "the trained model reads the three");
    assert_eq!(top5[0]["name"], "3");
    let p: Vec<f64> = top5.iter().map(|c| c["probability"].as_f64().unwrap()).collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]), "sorted by probability");
    assert_eq!(pairs[1]["image"], "seven-large");
    assert_eq!(pairs[1]["label"], 7, "a label given by name resolves to its index");

    // Attributions: every map method for every target of every pair.
    let arts = m["artifacts"].as_array().unwrap();
    for pair in pairs {
        let image = pair["image"].as_str().unwrap();
        let targets = pair["targets"].as_array().unwrap();
        assert!(targets.len() >= 2, "predicted and runner-up at least");
        assert_eq!(targets[0]["roles"][0], "predicted");
        let of = |kind: &str| {
            arts.iter()
                .filter(|a| a["kind"] == kind && a["image"] == image)
                .collect::<Vec<_>>()
        };
        assert_eq!(of("attribution").len(), 10 * targets.len(), "{image}");
        assert_eq!(of("activation-gradient").len(), 11 * targets.len(), "{image}");
        assert_eq!(of("weight-gradient").len(), 5, "{image}");
        for a in of("attribution") {
            assert!(a["target"]["index"].is_u64() && a["target"]["name"].is_string());
            assert!(a["params"].is_object() && a["overlay"].is_string());
            let shape = a["shape"].clone();
            match a["method"].as_str().unwrap() {
                "gradcam" | "gradcam++" | "hirescam" | "layercam" => {
                    assert_eq!(shape, serde_json::json!([10, 10]));
                    assert_eq!(a["layer"], "relu2");
                }
                "occlusion" => assert_eq!(shape, serde_json::json!([28, 28])),
                "integrated-gradients" => {
                    assert_eq!(shape, serde_json::json!([1, 28, 28]));
                    let gap = a["metrics"]["completeness_gap"].as_f64().unwrap();
                    assert!(gap.abs() < 0.05, "completeness gap {gap} with 50 steps");
                    assert_eq!(a["params"]["steps"], 50);
                }
                _ => assert_eq!(shape, serde_json::json!([1, 28, 28])),
            }
        }
    }
    let matrix = read(&out.join("models/lenet/images/three/attributions/index.html"));
    for title in [
        "Saliency",
        "Gradient × input",
        "SmoothGrad",
        "Integrated Gradients",
        "Guided backprop",
        "Grad-CAM",
        "Grad-CAM++",
        "HiResCAM",
        "LayerCAM",
        "Occlusion",
    ] {
        assert!(matrix.contains(&format!("<strong>{title}</strong>")), "row {title}");
    }
    assert!(matrix.contains("completeness gap"));
    assert!(matrix.contains("href=\"../../../../../static/style.css\""));
    let grads = read(&out.join("models/lenet/images/three/gradients/index.html"));
    assert!(grads.contains("Weight gradients") && grads.contains("conv2.weight"));
    assert!(page.contains("href=\"../../../../models/lenet/images/three/attributions/index.html\""));

    // Every artifact's files exist and every npy has the recorded shape.
    let kinds = |k: &str| arts.iter().filter(|a| a["kind"] == k).count();
    assert_eq!(kinds("activation"), 2 * 11);
    assert_eq!(kinds("logits"), 2);
    assert_eq!(kinds("filters"), 2);
    assert_eq!(kinds("weights"), 3);
    for a in arts {
        if let Some(png) = a["png"].as_str() {
            assert!(out.join(png).is_file(), "{png}");
        }
        let npy = a["npy"].as_str().expect("every artifact has its array");
        let t = Tensor::read_npy(out.join(npy)).unwrap();
        let shape: Vec<usize> = a["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(t.dims(), shape.as_slice(), "{npy}");
    }
    let act = |img: &str, layer: &str| {
        Tensor::read_npy(out.join(format!("models/lenet/images/{img}/activations/{layer}.npy"))).unwrap()
    };
    assert_eq!(act("three", "conv1").dims(), &[6, 28, 28]);
    assert_eq!(act("three", "pool2").dims(), &[16, 5, 5]);
    assert_eq!(act("seven-large", "fc1").dims(), &[120]);
    // The logits on disk agree with the top-5 in the manifest.
    let logits = Tensor::read_npy(out.join("models/lenet/images/three/logits.npy")).unwrap();
    assert_eq!(logits.argmax(0).unwrap().to_scalar::<u32>().unwrap(), 3);
    assert_eq!(
        act("three", "fc3").to_vec1::<f32>().unwrap(),
        logits.to_vec1::<f32>().unwrap()
    );
    // ReLU outputs are non-negative; the 56×42 image was resized to the model's 28×28.
    assert!(act("three", "relu2").min_all().unwrap().to_scalar::<f32>().unwrap() >= 0.0);
    let input = Tensor::read_npy(out.join("models/lenet/images/seven-large/input.npy")).unwrap();
    assert_eq!(input.dims(), &[1, 28, 28]);
}

#[test]
fn an_image_of_the_input_size_is_not_resampled() {
    let dir = common::fixture("basic");
    let (out, _) = build(dir.path());
    let original = image::open(dir.path().join("images/three.png")).unwrap().to_luma8();
    let shown = image::open(out.join("models/lenet/images/three/input.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(original.as_raw(), shown.as_raw());
    // And the tensor is exactly (pixel/255 − mean)/std.
    let x = Tensor::read_npy(out.join("models/lenet/images/three/input.npy")).unwrap();
    let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (v, p) in x.iter().zip(original.as_raw()) {
        assert!((v - (*p as f32 / 255.0 - 0.1307) / 0.3081).abs() < 1e-6);
    }
}

#[test]
fn a_failed_build_leaves_the_previous_site_untouched() {
    let dir = common::fixture("basic");
    let (out, _) = build(dir.path());
    let before = read(&out.join("index.html"));
    // A template that fails at render time.
    std::fs::write(
        dir.path().join("themes/default/image.html"),
        "{{ no_such_variable.field }}",
    )
    .unwrap();
    let site = Site::load(&dir.path().join("gallery.yaml")).unwrap();
    let err = site.build(&out, &|_| {}).unwrap_err().to_string();
    assert!(err.contains("image.html"), "{err}");
    assert_eq!(read(&out.join("index.html")), before);
    assert!(out.join("manifest.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
        .collect();
    assert!(leftovers.is_empty(), "no staging folder left behind");
}

#[test]
fn refuses_to_replace_a_folder_that_is_not_a_site() {
    let dir = common::fixture("basic");
    let out = dir.path().join("precious");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("thesis.tex"), "keep me").unwrap();
    let site = Site::load(&dir.path().join("gallery.yaml")).unwrap();
    let err = site.build(&out, &|_| {}).unwrap_err().to_string();
    assert!(err.contains("no manifest.json"), "{err}");
    assert_eq!(read(&out.join("thesis.tex")), "keep me");
}

#[test]
fn cli_build_and_check() {
    let dir = common::fixture("basic");
    let bin = env!("CARGO_BIN_EXE_cnnscope");
    let cfg = dir.path().join("gallery.yaml");
    let check = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(!dir.path().join("public").exists(), "check writes nothing");
    let b = std::process::Command::new(bin)
        .args(["build", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(b.status.success(), "{err}");
    assert!(err.contains("[2/2]"), "progress per pair: {err}");
    assert!(err.contains("pages"), "{err}");
    assert!(
        dir.path().join("public/index.html").is_file(),
        "output defaults to public/ next to the config"
    );
}

#[test]
fn compute_errors_name_the_model_image_method_and_class() {
    use cnnscope::build::{keys, BuildOptions};
    use cnnscope::methods::ModelInfo;
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n",
        "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n    methods: [{ name: layercam }]\n    targets: [5]\n",
    );
    let site = Site::load(&cfg).unwrap();
    let mc = &site.config.models[0];
    let fkey = keys::forward(mc, &site.hashes.weights[0], &site.hashes.images[0]);
    let info = ModelInfo {
        arch: mc.arch,
        input: &mc.input,
        layers: site.models[0].model.layers(),
    };
    let method = &mc.methods[0];
    let key = keys::method(&fkey, method, &method.params(&info), 5);
    // A file where the entry's folder must go: the method's result cannot be stored.
    let cache = dir.path().join("cache");
    let blocked = cache.join("entries").join(&key[..2]);
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, "in the way").unwrap();
    let opts = BuildOptions {
        cache: Some(cache),
        ..Default::default()
    };
    let err = site
        .build_with(&dir.path().join("public"), &opts, &|_| {})
        .unwrap_err()
        .to_string();
    for part in [
        "model `lenet` × image `three`, method `layercam` (layercam), class 5 `5`",
        &blocked.display().to_string(),
    ] {
        assert!(err.contains(part), "the error lacks `{part}`:\n{err}");
    }
    assert!(!dir.path().join("public").exists(), "no site from a failed build");
}
