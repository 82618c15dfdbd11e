//! The page layer without a network: the fixture site is loaded (config, weights, notes,
//! theme), the build's results are made by hand, and every page kind's view is snapshot
//! (insta, `tests/snapshots/`), as are the config's error messages. After a deliberate
//! change: `INSTA_UPDATE=always cargo test --release --test views` and review the diff.

mod common;

use std::collections::BTreeMap;

use cnnscope::build::explain::{
    Explained, MapCell, MethodRow, RandomisationResult, RandomisationRow, RowScale, SharedCell, TargetInfo,
    TargetLayers, WeightGradients,
};
use cnnscope::build::{ClassProb, ModelResult, PairResult, Site};
use cnnscope::metrics::deletion::Curves;
use cnnscope::pages::{self, attributions, gradients, home, image, leaderboard, method, model, randomisation};
use cnnscope::plan::{self, Pair};
use cnnscope::render::attribution::Drawing;
use cnnscope::render::colormap::Scale;
use cnnscope::render::pictures::{LayerPicture, WeightLayout, WeightPicture};

fn weights() -> ModelResult {
    let dir = plan::weights_files("lenet");
    ModelResult {
        weights: vec![
            WeightPicture {
                layer: "conv1".into(),
                conv: true,
                tensor: "conv1.weight".into(),
                shape: vec![6, 1, 5, 5],
                layout: WeightLayout::Filters {
                    filters: 6,
                    channels: 1,
                    kh: 5,
                    kw: 5,
                    drawn_filters: 6,
                    drawn_channels: 1,
                },
                png: format!("{dir}/conv1.png"),
                npy: format!("{dir}/conv1.npy"),
                scale: Scale::Diverging { abs: 0.75 },
            },
            WeightPicture {
                layer: "fc1".into(),
                conv: false,
                tensor: "fc1.weight".into(),
                shape: vec![120, 400],
                layout: WeightLayout::Matrix {
                    outputs: 120,
                    inputs: 400,
                    drawn_outputs: 120,
                    drawn_inputs: 400,
                },
                png: format!("{dir}/fc1.png"),
                npy: format!("{dir}/fc1.npy"),
                scale: Scale::Diverging { abs: 0.25 },
            },
        ],
        artifacts: Vec::new(),
    }
}

fn layer(dir: &str, name: &str, kind: &str, shape: Vec<usize>, scale: Scale) -> LayerPicture {
    let vector = shape.len() == 1;
    let shape_of = shape.clone();
    LayerPicture {
        name: name.into(),
        kind: kind.into(),
        shape,
        png: format!("{dir}/{name}.png"),
        npy: format!("{dir}/{name}.npy"),
        scale,
        value_min: -1.5,
        value_max: 4.25,
        strongest: vector.then(|| vec![3, 5, 8]),
        shown: None,
        grid: match *shape_of.as_slice() {
            [c, h, w] => Some(cnnscope::render::grid::Layout::of(c, h, w, c.min(8), 4)),
            _ => None,
        },
        per_map: (!vector).then(|| format!("{dir}/{name}-maps.png")),
        faint: 0,
    }
}

/// One pair's results: predicted class `top` (with the label when it differs), every map
/// method of the model a cell per target, the gradients of the first target.
fn pair(site: &Site, image: usize, top: usize) -> PairResult {
    let mc = &site.config.models[0];
    let ic = &site.config.images[image];
    let dir = plan::image_page(&mc.id, &ic.id);
    let label = ic.label_index(mc);
    let mut targets = vec![TargetInfo {
        index: top,
        name: mc.classes[top].clone(),
        roles: if label == Some(top) {
            vec!["predicted", "label"]
        } else {
            vec!["predicted"]
        },
        probability: 0.875,
    }];
    targets.push(TargetInfo {
        index: (top + 5) % 10,
        name: mc.classes[(top + 5) % 10].clone(),
        roles: vec!["runner-up"],
        probability: 0.0625,
    });
    let slugs = cnnscope::methods::slugs(&mc.methods);
    let rows = mc
        .methods
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_map())
        .map(|(k, m)| MethodRow {
            method: k,
            slug: slugs[k].clone(),
            cells: targets
                .iter()
                .map(|t| {
                    let files = plan::attribution_files(&mc.id, &ic.id, &slugs[k]);
                    let cam = m.name().contains("cam");
                    MapCell {
                        target: t.index,
                        heatmap: format!("{files}/{}.png", t.index),
                        overlay: format!("{files}/{}-overlay.png", t.index),
                        npy: format!("{files}/{}.npy", t.index),
                        shape: if cam { vec![10, 10] } else { vec![1, 28, 28] },
                        drawing: if cam {
                            Drawing::Cam {
                                raw_min: 0.0,
                                raw_max: 2.5,
                                from: [10, 10],
                                to: [28, 28],
                                placement: cnnscope::render::attribution::Placement::Field { first: 4.5, step: 2.0 },
                            }
                        } else {
                            Drawing::Signed { clip: 0.125 }
                        },
                        scale: if cam {
                            Scale::Sequential { min: 0.0, max: 1.0 }
                        } else {
                            Scale::Diverging { abs: 0.125 }
                        },
                        metrics: if m.name() == "integrated-gradients" {
                            BTreeMap::from([
                                ("completeness_gap".to_string(), 0.00125),
                                ("score_difference".to_string(), 7.5),
                            ])
                        } else {
                            BTreeMap::new()
                        },
                    }
                })
                .collect(),
            // Made-up curves whose areas differ by method and image, for the leaderboard.
            curves: targets
                .iter()
                .map(|_| {
                    let d = 0.05 * (k + 1) as f32 / (image + 1) as f32;
                    let deletion = vec![0.875, d, 0.0];
                    let insertion = vec![0.0, 1.0 - d, 0.875];
                    Some(Curves {
                        deletion_auc: cnnscope::metrics::deletion::auc(&deletion),
                        insertion_auc: cnnscope::metrics::deletion::auc(&insertion),
                        deletion,
                        insertion,
                    })
                })
                .collect(),
            // A shared scale for the CAM rows.
            shared: m.name().contains("cam").then(|| RowScale {
                scale: Scale::Sequential { min: 0.0, max: 2.5 },
                cells: targets
                    .iter()
                    .map(|t| {
                        let files = plan::attribution_files(&mc.id, &ic.id, &slugs[k]);
                        SharedCell {
                            target: t.index,
                            heatmap: format!("{files}/{}-row.png", t.index),
                            overlay: format!("{files}/{}-row-overlay.png", t.index),
                        }
                    })
                    .collect(),
            }),
        })
        .collect();
    let files = plan::randomisation_files(&mc.id, &ic.id);
    let randomisation = RandomisationResult {
        class: top,
        checkpoints: vec!["fc3".into(), "conv1".into()],
        rows: ["saliency", "gradcam"]
            .iter()
            .enumerate()
            .map(|(r, name)| RandomisationRow {
                method: name.to_string(),
                original: format!("{files}/r{r}-original.png"),
                // Saliency forgets the weights; Grad-CAM here does not (|ρ| > 0.5: flagged).
                spearman: if r == 0 { vec![0.5, 0.125] } else { vec![0.875, -0.75] },
                maps: (0..2).map(|c| format!("{files}/r{r}-{c}.png")).collect(),
            })
            .collect(),
    };
    let grads = plan::activation_gradient_files(&mc.id, &ic.id, top);
    PairResult {
        pair: Pair { model: 0, image },
        top5: (0..5)
            .map(|r| ClassProb {
                index: (top + r) % 10,
                name: mc.classes[(top + r) % 10].clone(),
                probability: [0.875, 0.0625, 0.03125, 0.015625, 0.0078125][r],
            })
            .collect(),
        layers: vec![
            layer(
                &format!("{dir}/activations"),
                "conv1",
                "conv",
                vec![6, 28, 28],
                Scale::Diverging { abs: 2.0 },
            ),
            layer(
                &format!("{dir}/activations"),
                "fc3",
                "linear",
                vec![10],
                Scale::Diverging { abs: 9.0 },
            ),
        ],
        input_png: format!("{dir}/input.png"),
        artifacts: Vec::new(),
        explained: Explained {
            activation_gradients: vec![TargetLayers {
                target: targets[0].clone(),
                layers: vec![layer(
                    &grads,
                    "relu2",
                    "relu",
                    vec![16, 10, 10],
                    Scale::Diverging { abs: 0.5 },
                )],
            }],
            weight_gradients: Some(WeightGradients {
                class: label.unwrap_or(top),
                from_label: label.is_some(),
                tensors: weights().weights,
            }),
            targets,
            rows,
            randomisation: Some(randomisation),
            artifacts: Vec::new(),
            timings: Vec::new(),
            computed: 0,
        },
        computed: 0,
    }
}

#[test]
fn every_page_view_of_the_fixture_site() {
    let dir = common::fixture("basic");
    let cfg = dir.path().join("gallery.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let metrics = "metrics:\n  faithfulness: {}\n  randomisation:\n    methods: [saliency, gradcam]\n    checkpoints: [fc3, conv1]\n";
    std::fs::write(&cfg, format!("{text}{metrics}")).unwrap();
    let site = Site::load(&cfg).unwrap();
    let models = vec![weights()];
    // The seven is predicted as a one: a misclassified image, with a runner-up.
    let pairs = vec![pair(&site, 0, 3), pair(&site, 1, 1)];
    let input = pages::Input {
        site: &site,
        models: &models,
        pairs: &pairs,
        units: &[],
        featurevis: &[],
    };
    insta::assert_json_snapshot!("home", home::view(&input, None).unwrap());
    insta::assert_json_snapshot!("model", model::view(&input, 0).unwrap(), {
        ".training.loss_svg" => "[svg]",
        ".training.accuracy_svg" => "[svg]",
    });
    insta::assert_json_snapshot!("image", image::view(&input, &pairs[1]));
    insta::assert_json_snapshot!("attributions", attributions::view(&input, &pairs[1]).unwrap(), {
        ".rows[].cells[].cell.faithfulness.chart" => "[svg]",
    });
    insta::assert_json_snapshot!("gradients", gradients::view(&input, &pairs[0]));
    let slugs = cnnscope::methods::slugs(&site.config.models[0].methods);
    let k = slugs.iter().position(|s| s == "hirescam").unwrap();
    insta::assert_json_snapshot!("method-hirescam", method::view(&input, 0, k, &slugs[k]));
    let k = slugs.iter().position(|s| s == "gradcam").unwrap();
    insta::assert_json_snapshot!("method-gradcam", method::view(&input, 0, k, &slugs[k]));
    insta::assert_json_snapshot!("leaderboard", leaderboard::view(&input, 0).unwrap());
    insta::assert_json_snapshot!("randomisation", randomisation::view(&input, &pairs[0]).unwrap());
}

/// The config's error for `from` replaced by `to` in the fixture, with the temp folder
/// shown as `<site>`.
fn config_error(from: &str, to: &str) -> String {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), from, to);
    let err = match Site::load(&cfg) {
        Ok(_) => panic!("`{to}` loaded"),
        Err(e) => e.to_string(),
    };
    err.replace(&dir.path().display().to_string(), "<site>")
}

#[test]
fn config_error_messages() {
    let input = "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n";
    let cases = [
        ("second-image-label", "label: \"7\"", "label: seventy"),
        (
            "second-image-path",
            "path: images/seven-large.png",
            "path: images/eight.png",
        ),
        ("duplicate-id", "id: seven-large", "id: three"),
        (
            "unknown-method",
            input,
            &format!("{input}    methods:\n      - name: saliency\n      - name: lime\n"),
        ),
        (
            "unknown-parameter",
            input,
            &format!("{input}    methods:\n      - name: saliency\n      - name: layercam\n        layr: relu1\n"),
        ),
        (
            "layer-without-maps",
            input,
            &format!("{input}    methods:\n      - name: saliency\n      - {{ name: hirescam, layer: fc2 }}\n"),
        ),
    ];
    for (name, from, to) in cases {
        insta::assert_snapshot!(name, config_error(from, to));
    }
}
