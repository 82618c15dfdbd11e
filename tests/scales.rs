//! How maps are scaled and placed, held to their numbers: CAM colour bars in raw units, the
//! matrix's shared row scale, CAMs placed by receptive field, per-method and per-metric
//! targets, and the activation grids' per-map view, numbers and labels.

mod common;

use cnnscope::build::Site;
use cnnscope::render::colormap::Scale;
use serde_json::Value;

fn read(out: &std::path::Path, page: &str) -> String {
    std::fs::read_to_string(out.join(page).join("index.html")).unwrap()
}

fn artifacts<'a>(m: &'a Value, kind: &str, method: &str) -> Vec<&'a Value> {
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind && a["method"] == method && a["image"] == "three")
        .collect()
}

/// The raw CAM of an artifact, after the ReLU.
fn cam(out: &std::path::Path, a: &Value) -> Vec<f32> {
    let t = candle_core::Tensor::read_npy(out.join(a["npy"].as_str().unwrap())).unwrap();
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(|v| v.max(0.0))
        .collect()
}

/// The largest value a viridis picture on 0 … 1 shows, read back through the colour map.
fn brightest(path: &std::path::Path) -> f32 {
    let scale = Scale::Sequential { min: 0.0, max: 1.0 };
    let table: Vec<(f32, [u8; 3])> = (0..=255)
        .map(|i| (i as f32 / 255.0, scale.color(i as f32 / 255.0)))
        .collect();
    let value = |c: [u8; 3]| {
        table
            .iter()
            .min_by_key(|(_, t)| (0..3).map(|k| (t[k] as i32 - c[k] as i32).pow(2)).sum::<i32>())
            .unwrap()
            .0
    };
    image::open(path)
        .unwrap()
        .to_rgb8()
        .pixels()
        .map(|p| value(p.0))
        .fold(0.0, f32::max)
}

#[test]
fn cam_rows_show_raw_ranges_share_a_scale_and_sit_at_their_fields() {
    let (dir, cfg) = common::fixture_with_model_keys(
        "    methods: [{ name: gradcam }, { name: gradcam, placement: stretch }, { name: gradient-x-input }, { name: occlusion, targets: [predicted] }]\n    metrics:\n      faithfulness: { steps: 8, targets: [predicted] }\n",
    );
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let page = read(&out, "models/lenet/images/three/attributions");

    // Grad-CAM at relu2: each cell at its receptive field's centre, said on the page; the
    // second entry stretched as pytorch-grad-cam does.
    assert!(page.contains("layer = relu2, placement = field"), "no field placement");
    assert!(
        page.contains("layer = relu2, placement = stretch"),
        "no stretched entry"
    );
    assert!(page.contains("cell i at input pixel 4.5 + 2·i"), "placement not worded");
    let cams = artifacts(&manifest, "attribution", "gradcam");
    assert_eq!(cams.len(), 4, "two Grad-CAM entries × predicted and runner-up");
    // The same raw map, drawn two ways.
    let by_target = |placement: &str, target: u64| {
        cams.iter()
            .find(|a| a["params"]["placement"] == placement && a["target"]["index"] == target)
            .copied()
            .unwrap()
    };
    let (field, stretch) = (by_target("field", 3), by_target("stretch", 3));
    assert_eq!(cam(&out, field), cam(&out, stretch));
    assert_ne!(
        std::fs::read(out.join(field["png"].as_str().unwrap())).unwrap(),
        std::fs::read(out.join(stretch["png"].as_str().unwrap())).unwrap(),
        "placement changes the drawing"
    );

    // The colour bar under a CAM cell gives its raw range, not 0 … 1.
    let runner_up = cams
        .iter()
        .find(|a| a["params"]["placement"] == "field" && a["target"]["index"] != 3)
        .copied()
        .unwrap();
    let top = |a: &Value| cam(&out, a).into_iter().fold(0f32, f32::max);
    let (strong, weak) = (top(field), top(runner_up));
    assert!(weak < strong, "the runner-up's map is weaker here ({weak} vs {strong})");
    assert!(
        page.contains(&format!("<span>{}</span>", (strong * 1000.0).round() / 1000.0)),
        "no raw maximum {strong} on the page"
    );

    // One scale per row: the switch, the pictures, and the weaker map no longer reaching
    // the top of the scale while it does on its own.
    assert!(page.contains("id=\"scale-row\""), "no scale switch");
    let own = out.join(runner_up["png"].as_str().unwrap());
    let row = own.with_file_name(format!("{}-row.png", runner_up["target"]["index"]));
    assert!(page.contains(&format!("{}-row-overlay.png", runner_up["target"]["index"])));
    let strong_row = out.join(field["png"].as_str().unwrap()).with_file_name("3-row.png");
    let (own_top, row_top, strong_top) = (brightest(&own), brightest(&row), brightest(&strong_row));
    assert!(
        row_top < own_top - 0.05,
        "on the row's scale the weaker map is dimmer: {row_top} vs {own_top}"
    );
    // Where the map's minimum is 0, min–max and the row's scale differ by the factor weak / strong.
    if cam(&out, runner_up).into_iter().fold(f32::INFINITY, f32::min) == 0.0 {
        assert!(
            (row_top - own_top * weak / strong).abs() < 0.03,
            "{row_top} vs {own_top} × {}",
            weak / strong
        );
    }
    assert!(strong_top > row_top, "{strong_top} vs {row_top}");

    // Signed maps show their heatmap beside the overlay.
    let gxi = artifacts(&manifest, "attribution", "gradient-x-input");
    for a in &gxi {
        let cell = page
            .split(&format!("<td id=\"gradient-x-input-{}\">", a["target"]["index"]))
            .nth(1)
            .and_then(|s| s.split("</summary>").next())
            .unwrap();
        assert!(
            cell.contains(a["png"].as_str().unwrap()) && cell.contains(a["overlay"].as_str().unwrap()),
            "heatmap and overlay side by side: {cell}"
        );
    }

    // Occlusion explains the prediction only; the runner-up's cell says why it is empty,
    // and the curves are taken of the prediction only.
    let occ = artifacts(&manifest, "attribution", "occlusion");
    assert_eq!(occ.len(), 1);
    assert_eq!(occ[0]["target"]["index"], 3);
    assert!(
        page.contains("this method&#39;s <code>targets:</code>")
            || page.contains("this method's <code>targets:</code>")
    );
    let curves = artifacts(&manifest, "faithfulness", "gradcam");
    assert!(!curves.is_empty() && curves.iter().all(|a| a["target"]["index"] == 3));
}

#[test]
fn activation_grids_number_maps_label_strips_and_switch_to_per_map_scales() {
    let (dir, cfg) = common::fixture_with_model_keys("    methods: [{ name: saliency }]\n");
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    let page = read(&out, "models/lenet/images/three");
    let conv1 = page
        .split("id=\"layer-conv1\"")
        .nth(1)
        .and_then(|s| s.split("</figure>").next())
        .unwrap();
    // Six maps, numbered 0–5 at their corners, and the same maps each on its own scale.
    for n in 0..6 {
        assert!(conv1.contains(&format!("\">{n}</span>")), "map {n} unnumbered");
    }
    assert!(conv1.contains("id=\"sw-a-conv1-map\""), "no per-map switch");
    let per_map = conv1
        .split("src=\"")
        .filter_map(|s| s.split('"').next())
        .find(|s| s.ends_with("-maps.png"))
        .expect("a per-map picture");
    let path = out.join("models/lenet/images/three").join(per_map);
    assert!(path.is_file(), "{}", path.display());
    // fc3's ten cells carry their classes.
    let fc3 = page
        .split("id=\"layer-fc3\"")
        .nth(1)
        .and_then(|s| s.split("</figure>").next())
        .unwrap();
    let labels = fc3.split("class=\"strip-labels\"").nth(1).unwrap();
    for d in 0..10 {
        assert!(labels.contains(&format!("<span>{d}</span>")), "digit {d} unlabelled");
    }
}

#[test]
fn per_method_targets_are_checked_with_their_line() {
    let (_dir, cfg) = common::fixture_with_model_keys(
        "    methods:\n      - name: saliency\n      - { name: occlusion, targets: [predicted, elephant] }\n",
    );
    let e = common::load_err(&cfg);
    common::assert_has(
        &e,
        &[
            "gallery.yaml:13: models[0].methods[1].targets[1]",
            "`elephant`",
            "neither predicted",
        ],
    );
    let (_dir, cfg) = common::fixture_with_model_keys(
        "    methods: [{ name: gradcam }]\n    metrics:\n      faithfulness: { targets: [99] }\n",
    );
    let e = common::load_err(&cfg);
    common::assert_has(&e, &["models[0].metrics.faithfulness.targets[0]", "out of range"]);
    let (_dir, cfg) = common::fixture_with_model_keys("    methods: [{ name: gradcam, placement: centre }]\n");
    let e = common::load_err(&cfg);
    common::assert_has(&e, &["models[0].methods[0].placement", "unknown variant `centre`"]);
}
