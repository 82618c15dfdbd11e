//! One test per kind of bad input: each must fail with a message that names the file and
//! the key, line or tensor, and say what is wrong.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use cnnscope::build::Site;

use common::{assert_has, load_err};

#[test]
fn the_fixture_itself_is_valid() {
    let dir = common::fixture("basic");
    Site::load(&dir.path().join("gallery.yaml")).unwrap();
}

#[test]
fn unknown_key() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "    label: 3\n", "    label: 3\n    colour: red\n");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml", "images[0]", "unknown field `colour`", "line 15"],
    );
}

#[test]
fn wrong_type() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "channels: 1", "channels: one");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml", "models[0].input.channels", "invalid type", "line 10"],
    );
}

#[test]
fn duplicate_id() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "id: seven-large", "id: three");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:16:", "images[1].id", "duplicate id `three`"],
    );
}

#[test]
fn invalid_id() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "id: lenet", "id: LeNet_5");
    assert_has(&load_err(&cfg), &["gallery.yaml:5:", "models[0].id", "[a-z0-9-]+"]);
}

#[test]
fn unknown_architecture() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "arch: lenet5", "arch: lenet7");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:6:",
            "models[0].arch",
            "unknown architecture `lenet7`",
            "lenet5",
        ],
    );
}

#[test]
fn missing_weights_file() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "weights: models/lenet5-mnist.safetensors",
        "weights: models/nope.safetensors",
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:7:",
            "models[0].weights",
            "models/nope.safetensors",
            "not found",
        ],
    );
}

#[test]
fn missing_classes_file() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "classes: classes.txt", "classes: names.txt");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:9:", "models[0].classes", "names.txt", "not found"],
    );
}

#[test]
fn missing_image_file() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "path: images/three.png", "path: images/four.png");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:13:", "images[0].path", "images/four.png", "not found"],
    );
}

#[test]
fn image_channels_do_not_fit_the_model() {
    let dir = common::fixture("basic");
    image::RgbImage::from_pixel(28, 28, image::Rgb([10, 200, 30]))
        .save(dir.path().join("images/rgb.png"))
        .unwrap();
    let cfg = common::edit_config(dir.path(), "path: images/three.png", "path: images/rgb.png");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:13:", "images[0].path", "3 channel(s)", "`lenet` takes 1"],
    );
}

#[test]
fn not_an_image() {
    let dir = common::fixture("basic");
    std::fs::write(dir.path().join("images/notes.png"), "this is text").unwrap();
    let cfg = common::edit_config(dir.path(), "path: images/three.png", "path: images/notes.png");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:13:",
            "images[0].path",
            "images/notes.png",
            "cannot read the image",
            "not a PNG or JPEG",
        ],
    );
}

#[test]
fn label_out_of_range() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "label: 3", "label: 12");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:14:", "images[0].label", "out of range", "10 classes"],
    );
}

#[test]
fn label_name_unknown() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "label: \"7\"", "label: seven");
    // The second image's key, not the first image's `label` (line 14).
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:18:", "images[1].label", "`seven` is not a class"],
    );
}

#[test]
fn mean_has_the_wrong_length() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "mean: [0.1307]", "mean: [0.1, 0.2, 0.3]");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:10:", "models[0].input.mean", "3 values", "1 channel"],
    );
}

#[test]
fn input_size_does_not_fit_the_architecture() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "size: [28, 28]", "size: [32, 32]");
    assert_has(&load_err(&cfg), &["gallery.yaml:10:", "models[0].input.size", "28×28"]);
}

#[test]
fn image_for_an_unknown_model() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "    label: 3\n", "    label: 3\n    models: [resnet]\n");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:15:", "images[0].models", "unknown model `resnet`"],
    );
}

#[test]
fn no_models() {
    let dir = common::fixture("basic");
    let cfg = common::write_config(dir.path(), "site: { title: t }\nmodels: []\n");
    assert_has(&load_err(&cfg), &["gallery.yaml:2:", "models", "at least one model"]);
}

#[test]
fn malformed_yaml_with_a_tab() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "  - id: lenet\n    arch", "  - id: lenet\n\tarch");
    assert_has(&load_err(&cfg), &["gallery.yaml", "line 6"]);
}

/// Writes the fixture's weights with `edit` applied, and points the config at them.
fn with_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> std::path::PathBuf {
    let mut t = candle_core::safetensors::load(dir.join("models/lenet5-mnist.safetensors"), &Device::Cpu).unwrap();
    edit(&mut t);
    candle_core::safetensors::save(&t, dir.join("models/edited.safetensors")).unwrap();
    common::edit_config(
        dir,
        "weights: models/lenet5-mnist.safetensors",
        "weights: models/edited.safetensors",
    )
}

#[test]
fn weights_with_a_wrong_shape() {
    let dir = common::fixture("basic");
    let cfg = with_weights(dir.path(), |t| {
        t.insert(
            "fc3.weight".into(),
            Tensor::zeros((9, 84), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:7:",
            "models[0].weights",
            "edited.safetensors",
            "`fc3.weight`",
            "[9, 84]",
            "expects [10, 84]",
        ],
    );
}

#[test]
fn weights_with_a_missing_tensor() {
    let dir = common::fixture("basic");
    let cfg = with_weights(dir.path(), |t| {
        t.remove("conv2.bias");
    });
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:7:",
            "edited.safetensors",
            "`conv2.bias` is missing",
            "[16]",
        ],
    );
}

#[test]
fn weights_with_an_unexpected_tensor() {
    let dir = common::fixture("basic");
    let cfg = with_weights(dir.path(), |t| {
        t.insert(
            "fc4.weight".into(),
            Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:7:",
            "edited.safetensors",
            "unexpected tensor `fc4.weight`",
            "[2, 2]",
        ],
    );
}

#[test]
fn weights_file_truncated() {
    let dir = common::fixture("basic");
    let bytes = std::fs::read(dir.path().join("models/lenet5-mnist.safetensors")).unwrap();
    std::fs::write(dir.path().join("models/cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let cfg = common::edit_config(
        dir.path(),
        "weights: models/lenet5-mnist.safetensors",
        "weights: models/cut.safetensors",
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:7:",
            "models[0].weights",
            "cut.safetensors",
            "cannot read the weights",
        ],
    );
}

#[test]
fn note_with_bad_front_matter() {
    let dir = common::fixture("basic");
    std::fs::write(
        dir.path().join("content/broken.md"),
        "---\ntitle: x\nweight: [1,\n---\nbody\n",
    )
    .unwrap();
    assert_has(
        &load_err(&dir.path().join("gallery.yaml")),
        &["content/broken.md:", "front matter"],
    );
}

#[test]
fn note_with_invalid_utf8() {
    let dir = common::fixture("basic");
    std::fs::write(dir.path().join("content/latin1.md"), b"caf\xe9\n").unwrap();
    assert_has(
        &load_err(&dir.path().join("gallery.yaml")),
        &["content/latin1.md:1:", "not valid UTF-8", "0xE9 at column 4"],
    );
}

#[test]
fn cli_reports_errors_with_a_non_zero_exit_and_no_panic() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "arch: lenet5", "arch: lenet7");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cnnscope"))
        .args(["build", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: ") && err.contains("gallery.yaml:6: models[0].arch: unknown architecture `lenet7`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.path().join("public").exists());
}

fn with_methods(dir: &Path, methods: &str) -> std::path::PathBuf {
    let p = dir.join("gallery.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}{methods}")).unwrap();
    p
}

#[test]
fn the_fixture_with_methods_and_targets_is_valid() {
    let dir = common::fixture("basic");
    let cfg = with_methods(
        dir.path(),
        "methods:\n  - name: gradcam\n    layer: relu1\n  - { name: smoothgrad, samples: 4, noise: 0.2 }\ntargets: [predicted, 9, \"0\"]\n",
    );
    let site = Site::load(&cfg).unwrap();
    assert_eq!(site.config.models[0].methods.len(), 2);
    assert_eq!(site.config.models[0].targets.len(), 3);
}

#[test]
fn unknown_method() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "methods:\n  - name: lime\n");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:20:",
            "methods[0].name",
            "unknown method `lime`",
            "gradcam++",
            "hirescam",
        ],
    );
}

#[test]
fn unknown_method_parameter() {
    let dir = common::fixture("basic");
    let cfg = with_methods(
        dir.path(),
        "methods:\n  - name: saliency\n  - name: integrated-gradients\n    stepz: 10\n",
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:22:",
            "methods[1].stepz",
            "unknown field `stepz`",
            "expected `steps` or `baseline`",
        ],
    );
}

#[test]
fn bad_method_parameter_value_in_a_model_list() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n",
        "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n    methods:\n      - name: saliency\n      - { name: hirescam, layer: 3 }\n      - name: layercam\n        layer: fc1\n",
    );
    // A number where a layer name belongs: at the parameter's line, in the model's list.
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:13:", "models[0].methods[1].layer", "hirescam"],
    );
    let cfg = common::edit_config(dir.path(), "{ name: hirescam, layer: 3 }", "{ name: hirescam }");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:15:",
            "models[0].methods[2].layer",
            "`fc1` has no spatial maps",
        ],
    );
}

#[test]
fn zero_steps() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "methods:\n  - name: integrated-gradients\n    steps: 0\n");
    assert_has(&load_err(&cfg), &["gallery.yaml:21:", "methods[0].steps", "at least 1"]);
}

#[test]
fn negative_noise() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "methods:\n  - name: smoothgrad\n    noise: -0.1\n");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:21:", "methods[0].noise", "non-negative"],
    );
}

#[test]
fn gradcam_at_an_unknown_layer() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "methods:\n  - name: gradcam++\n    layer: layer4\n");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:21:",
            "methods[0].layer",
            "`layer4` is not a layer of lenet5",
            "relu2",
        ],
    );
}

#[test]
fn gradcam_at_a_layer_without_maps() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "methods:\n  - name: gradcam\n    layer: fc1\n");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:21:", "methods[0].layer", "no spatial maps"],
    );
}

#[test]
fn occlusion_window_larger_than_the_input() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "methods:\n  - name: occlusion\n    window: 40\n");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:21:", "methods[0].window", "between 1 and 28"],
    );
}

#[test]
fn unknown_target() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "targets: [predicted, cat]\n");
    assert_has(&load_err(&cfg), &["gallery.yaml:19:", "targets[1]", "`cat` is neither"]);
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "targets: [10]\n");
    assert_has(&load_err(&cfg), &["gallery.yaml:19:", "targets[0]", "out of range"]);
}

#[test]
fn a_model_level_method_list_is_named_as_such() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "    classes: classes.txt\n",
        "    classes: classes.txt\n    methods: [{ name: saliency }, { name: smoothgrad, samples: 0 }]\n",
    );
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:10:", "models[0].methods[1].samples", "at least 1"],
    );
}

/// A folder outside the fixture, with a digit and a note in it.
fn outside_folder() -> tempfile::TempDir {
    let o = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo().join("content/images/three.png"),
        o.path().join("three.png"),
    )
    .unwrap();
    std::fs::write(o.path().join("note.md"), "# From elsewhere\n").unwrap();
    o
}

#[test]
fn paths_outside_the_site_root_are_refused() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "classes: classes.txt",
        "classes: ../../../../../../../../../../etc/passwd",
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:9:",
            "models[0].classes",
            "leads to `/etc/passwd`, outside the site root",
            "site.allow_outside_root: true",
        ],
    );
    let dir = common::fixture("basic");
    let o = outside_folder();
    let abs = o.path().join("three.png");
    let cfg = common::edit_config(
        dir.path(),
        "path: images/three.png",
        &format!("path: {}", abs.display()),
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:13:",
            "images[0].path",
            &format!("`{}` is outside the site root", abs.display()),
        ],
    );
}

#[test]
fn a_symlink_inside_the_root_is_followed_and_one_out_refused() {
    let dir = common::fixture("basic");
    std::os::unix::fs::symlink(dir.path().join("images/three.png"), dir.path().join("images/alias.png")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("content/first.md"), dir.path().join("content/again.md")).unwrap();
    let cfg = common::edit_config(dir.path(), "path: images/three.png", "path: images/alias.png");
    let site = Site::load(&cfg).unwrap();
    assert!(
        site.content.notes.iter().any(|n| n.slug == "again"),
        "a note symlinked inside the root is read"
    );

    let o = outside_folder();
    std::os::unix::fs::symlink(o.path().join("three.png"), dir.path().join("images/out.png")).unwrap();
    let cfg = common::edit_config(dir.path(), "path: images/alias.png", "path: images/out.png");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:13:",
            "images[0].path",
            "`images/out.png` leads to",
            "outside the site root",
        ],
    );
}

#[test]
fn notes_and_themes_symlinked_out_of_the_root_are_refused() {
    let dir = common::fixture("basic");
    let o = outside_folder();
    std::os::unix::fs::symlink(o.path().join("note.md"), dir.path().join("content/borrowed.md")).unwrap();
    assert_has(
        &load_err(&dir.path().join("gallery.yaml")),
        &[
            "content/borrowed.md",
            "outside the site root",
            "site.allow_outside_root",
        ],
    );

    let dir = common::fixture("basic");
    std::fs::create_dir_all(o.path().join("theme")).unwrap();
    std::os::unix::fs::symlink(o.path().join("theme"), dir.path().join("themes/elsewhere")).unwrap();
    let cfg = common::edit_config(dir.path(), "  description:", "  theme: elsewhere\n  description:");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:3:",
            "site.theme",
            "`elsewhere` leads to",
            "outside the site root",
        ],
    );
    let cfg = common::edit_config(dir.path(), "  theme: elsewhere", "  theme: ../../etc");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:3:", "site.theme", "not a theme folder name"],
    );
}

#[test]
fn allow_outside_root_lets_paths_out() {
    let dir = common::fixture("basic");
    let o = outside_folder();
    std::os::unix::fs::symlink(o.path().join("note.md"), dir.path().join("content/borrowed.md")).unwrap();
    let abs = o.path().join("three.png");
    common::edit_config(
        dir.path(),
        "path: images/three.png",
        &format!("path: {}", abs.display()),
    );
    let cfg = common::edit_config(
        dir.path(),
        "  description:",
        "  allow_outside_root: true\n  description:",
    );
    let site = Site::load(&cfg).unwrap();
    assert!(site.config.site.allow_outside_root);
    assert_eq!(site.config.images[0].path, abs);
    assert!(site.content.notes.iter().any(|n| n.title == "From elsewhere"));
}

#[test]
fn a_grey_image_for_an_rgb_model_is_refused() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "channels: 1, mean: [0.1307], std: [0.3081]",
        "channels: 3, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]",
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:13:",
            "images[0].path",
            "1 channel(s)",
            "model `lenet` takes 3",
        ],
    );
}

#[test]
fn a_truncated_image_is_reported_with_its_key() {
    let dir = common::fixture("basic");
    let bytes = std::fs::read(dir.path().join("images/three.png")).unwrap();
    std::fs::write(dir.path().join("images/cut.png"), &bytes[..bytes.len() / 2]).unwrap();
    let cfg = common::edit_config(dir.path(), "path: images/three.png", "path: images/cut.png");
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:13:",
            "images[0].path",
            "images/cut.png",
            "cannot read the image",
        ],
    );
}

// Errors in entries after the first: each must name the line of its own entry's key.

#[test]
fn a_missing_file_of_the_second_image() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "path: images/seven-large.png", "path: images/eight.png");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:17:", "images[1].path", "images/eight.png", "not found"],
    );
}

/// Adds a second model (lines 11–19, its input in block style) whose `field: value` lines
/// are replaced by `edits`.
fn with_second_model(dir: &Path, edits: &[(&str, &str)]) -> std::path::PathBuf {
    let mut model = "  - id: lenet-b\n    arch: lenet5\n    weights: models/lenet5-mnist.safetensors\n    classes: classes.txt\n    input:\n      size: [28, 28]\n      channels: 1\n      mean: [0.1307]\n      std: [0.3081]\n".to_string();
    for (from, to) in edits {
        assert!(model.contains(from), "the second model has no `{from}`");
        model = model.replacen(from, to, 1);
    }
    common::edit_config(dir, "images:\n", &format!("{model}images:\n"))
}

#[test]
fn the_fixture_with_a_second_model_is_valid() {
    let dir = common::fixture("basic");
    let site = Site::load(&with_second_model(dir.path(), &[])).unwrap();
    assert_eq!(site.config.models.len(), 2);
}

#[test]
fn the_input_channels_of_the_second_model() {
    let dir = common::fixture("basic");
    let cfg = with_second_model(dir.path(), &[("channels: 1", "channels: 2")]);
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:17:", "models[1].input.channels", "must be 1 or 3, not 2"],
    );
}

#[test]
fn the_input_mean_of_the_second_model() {
    let dir = common::fixture("basic");
    let cfg = with_second_model(dir.path(), &[("mean: [0.1307]", "mean: [0.1, 0.2]")]);
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:18:", "models[1].input.mean", "2 values"],
    );
}

#[test]
fn the_architecture_of_the_second_model() {
    let dir = common::fixture("basic");
    let cfg = with_second_model(dir.path(), &[("arch: lenet5", "arch: lenet5b")]);
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:12:", "models[1].arch", "unknown architecture `lenet5b`"],
    );
}

#[test]
fn the_weights_of_the_second_model() {
    let dir = common::fixture("basic");
    let bytes = std::fs::read(dir.path().join("models/lenet5-mnist.safetensors")).unwrap();
    std::fs::write(dir.path().join("models/cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let cfg = with_second_model(
        dir.path(),
        &[(
            "weights: models/lenet5-mnist.safetensors",
            "weights: models/cut.safetensors",
        )],
    );
    // Found while loading the weights, after the config was validated.
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:13:",
            "models[1].weights",
            "cut.safetensors",
            "cannot read the weights",
        ],
    );
    let cfg = common::edit_config(
        dir.path(),
        "weights: models/cut.safetensors",
        "weights: models/none.safetensors",
    );
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:13:", "models[1].weights", "none.safetensors", "not found"],
    );
}

#[test]
fn the_classes_of_the_second_model() {
    let dir = common::fixture("basic");
    let cfg = with_second_model(dir.path(), &[("classes: classes.txt", "classes: names.txt")]);
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:14:", "models[1].classes", "names.txt", "not found"],
    );
}

#[test]
fn a_duplicate_model_id() {
    let dir = common::fixture("basic");
    let cfg = with_second_model(dir.path(), &[("id: lenet-b", "id: lenet")]);
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:11:", "models[1].id", "duplicate id `lenet`"],
    );
}

#[test]
fn an_image_id_taken_by_a_model() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(dir.path(), "id: seven-large", "id: lenet");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:16:", "images[1].id", "duplicate id `lenet`"],
    );
}

#[test]
fn a_third_entry_with_a_duplicate_id() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "  - id: seven-large\n    path: images/three.png\n");
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:19:", "images[2].id", "duplicate id `seven-large`"],
    );
}

#[test]
fn an_unknown_class_in_a_block_target_list() {
    let dir = common::fixture("basic");
    let cfg = with_methods(dir.path(), "targets:\n  - predicted\n  - cat\n");
    assert_has(&load_err(&cfg), &["gallery.yaml:21:", "targets[1]", "`cat` is neither"]);
}

#[test]
fn an_unknown_class_in_a_model_target_list() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "    classes: classes.txt\n",
        "    classes: classes.txt\n    targets:\n      - label\n      - 10\n",
    );
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:12:", "models[0].targets[1]", "out of range"],
    );
}

#[test]
fn a_parameter_of_the_second_method() {
    let dir = common::fixture("basic");
    let cfg = with_methods(
        dir.path(),
        "methods:\n  - name: occlusion\n    window: 4\n  - name: occlusion\n    window: 0\n",
    );
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:23:", "methods[1].window", "between 1 and 28"],
    );
}

#[test]
fn a_parameter_of_the_second_method_of_a_model() {
    let dir = common::fixture("basic");
    let cfg = common::edit_config(
        dir.path(),
        "    classes: classes.txt\n",
        "    classes: classes.txt\n    methods:\n      - name: gradcam\n      - name: gradcam\n        layer: nope\n",
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:13:",
            "models[0].methods[1].layer",
            "`nope` is not a layer of lenet5",
        ],
    );
}

#[test]
fn a_parameter_of_a_flow_style_method() {
    let dir = common::fixture("basic");
    let cfg = with_methods(
        dir.path(),
        "methods: [{ name: saliency },\n  { name: smoothgrad,\n    samples: 0 }]\n",
    );
    assert_has(
        &load_err(&cfg),
        &["gallery.yaml:21:", "methods[1].samples", "at least 1"],
    );
}
