//! Helpers shared by the integration tests: fixture sites copied into temp folders.
#![allow(dead_code)]

pub mod cli;
pub mod pth;

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A copy of `tests/fixtures/<name>` in a temp folder, with the trained LeNet-5 weights
/// and log under `models/` and a held-out digit and an upscaled one under `images/`.
pub fn fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("tests/fixtures").join(name), dir.path());
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    for f in ["lenet5-mnist.safetensors", "lenet5-mnist.json"] {
        std::fs::copy(repo().join("models").join(f), models.join(f)).unwrap();
    }
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(repo().join("content/images/three.png"), images.join("three.png")).unwrap();
    let seven = image::open(repo().join("content/images/seven.png")).unwrap();
    seven
        .resize_exact(56, 42, image::imageops::FilterType::Nearest)
        .save(images.join("seven-large.png"))
        .unwrap();
    dir
}

/// Replaces `from` by `to` in the fixture's gallery.yaml (which must contain `from`).
pub fn edit_config(dir: &Path, from: &str, to: &str) -> PathBuf {
    let p = dir.join("gallery.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "fixture config has no `{from}`");
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("gallery.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The error a config that must not load gives.
pub fn load_err(cfg: &Path) -> String {
    match cnnscope::build::Site::load(cfg) {
        Ok(_) => panic!("{} loaded, but should have failed", cfg.display()),
        Err(e) => e.to_string(),
    }
}

/// Asserts that an error message holds every one of `parts`.
pub fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message lacks `{p}`:\n{msg}");
    }
}

/// The fixture site with `extra` keys added to its LeNet-5 model (after `input:`), e.g.
/// `"    methods: [{ name: saliency }]\n"`; returns the folder and the config's path.
pub fn fixture_with_model_keys(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = fixture("basic");
    let input = "    input: { size: [28, 28], channels: 1, mean: [0.1307], std: [0.3081] }\n";
    let cfg = edit_config(dir.path(), input, &format!("{input}{extra}"));
    (dir, cfg)
}
