//! The bad-input matrix: for each kind of bad input, `cnnscope build` on a site that was
//! built before must fail with a clear error naming the file and the line or key, exit
//! non-zero without a panic, and leave the previous site byte for byte as it was.
//!
//! The good site is built once; every case then runs on a fresh copy of it (output
//! included), and the test reports every failing case by name.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};

/// The fixture, with one cheap method, so that the good build takes well under a second.
const METHODS: &str = "methods: [{name: saliency}]\ntargets: [predicted]\n";

fn cli_build(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cnnscope"))
        .arg("build")
        .arg("--config")
        .arg(dir.join("gallery.yaml"))
        .arg("--output")
        .arg(dir.join("public"))
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Every file under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn replace(dir: &Path, from: &str, to: &str) {
    common::edit_config(dir, from, to);
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::write(path, bytes).unwrap();
}

fn lenet_weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("models/lenet5-mnist.safetensors"), &Device::Cpu).unwrap()
}

fn use_weights(dir: &Path, file: &str) {
    replace(
        dir,
        "weights: models/lenet5-mnist.safetensors",
        &format!("weights: models/{file}"),
    );
}

fn use_image(dir: &Path, file: &str) {
    replace(dir, "path: images/three.png", &format!("path: images/{file}"));
}

/// A PNG chunk: length, type, data, CRC of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    out
}

/// A well-formed PNG whose header claims `w`×`h` grey pixels, with one tiny data chunk.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, deflate, no filter, no interlace
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// A folder outside the site, holding a copy of the digit and of the weights.
fn outside() -> tempfile::TempDir {
    let o = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::repo().join("content/images/three.png"),
        o.path().join("three.png"),
    )
    .unwrap();
    std::fs::copy(
        common::repo().join("models/lenet5-mnist.safetensors"),
        o.path().join("lenet.safetensors"),
    )
    .unwrap();
    write(&o.path().join("note.md"), "# Not yours\n");
    o
}

struct Case {
    name: &'static str,
    /// Turns the good site in the folder into a bad one; may return a folder to keep alive.
    apply: fn(&Path) -> Option<tempfile::TempDir>,
    /// What the error must say: the file, the line or key, and what is wrong.
    expect: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "malformed YAML",
            apply: |d| {
                replace(d, "size: [28, 28]", "size: [28, 28");
                None
            },
            expect: &["gallery.yaml", "did not find expected", "line 10"],
        },
        Case {
            name: "a tab where spaces belong",
            apply: |d| {
                replace(d, "  - id: lenet\n    arch", "  - id: lenet\n\tarch");
                None
            },
            expect: &["gallery.yaml", "line 6", "tab"],
        },
        Case {
            name: "unknown key",
            apply: |d| {
                replace(d, "    label: 3\n", "    label: 3\n    colour: red\n");
                None
            },
            expect: &["gallery.yaml", "images[0]", "unknown field `colour`", "line 15"],
        },
        Case {
            name: "wrong type",
            apply: |d| {
                replace(d, "channels: 1", "channels: one");
                None
            },
            expect: &["gallery.yaml", "models[0].input.channels", "invalid type", "line 10"],
        },
        Case {
            name: "duplicate id",
            apply: |d| {
                replace(d, "id: seven-large", "id: three");
                None
            },
            expect: &["gallery.yaml:16:", "images[1].id", "duplicate id `three`"],
        },
        Case {
            name: "empty models",
            apply: |d| {
                let p = d.join("gallery.yaml");
                let text = std::fs::read_to_string(&p).unwrap();
                let (head, rest) = text.split_once("models:\n").unwrap();
                let images = rest.find("images:").unwrap();
                write(&p, format!("{head}models: []\n{}", &rest[images..]));
                None
            },
            expect: &["gallery.yaml:4:", "models: at least one model is required"],
        },
        Case {
            name: "unknown architecture",
            apply: |d| {
                replace(d, "arch: lenet5", "arch: lenet7");
                None
            },
            expect: &[
                "gallery.yaml:6:",
                "models[0].arch",
                "unknown architecture `lenet7`",
                "lenet5",
            ],
        },
        Case {
            name: "unknown method",
            apply: |d| {
                replace(d, "{name: saliency}", "{name: lime}");
                None
            },
            expect: &["gallery.yaml:19:", "methods[0].name", "unknown method `lime`"],
        },
        Case {
            name: "unknown method parameter",
            apply: |d| {
                replace(d, "{name: saliency}", "{name: integrated-gradients, stepz: 10}");
                None
            },
            expect: &["gallery.yaml:19:", "methods[0].stepz", "unknown field `stepz`"],
        },
        Case {
            name: "parameter out of range: steps 0",
            apply: |d| {
                replace(d, "{name: saliency}", "{name: integrated-gradients, steps: 0}");
                None
            },
            expect: &["gallery.yaml:19:", "methods[0].steps", "at least 1"],
        },
        Case {
            name: "parameter out of range: negative noise",
            apply: |d| {
                replace(d, "{name: saliency}", "{name: smoothgrad, noise: -0.1}");
                None
            },
            expect: &["gallery.yaml:19:", "methods[0].noise", "non-negative"],
        },
        Case {
            name: "missing image",
            apply: |d| {
                use_image(d, "four.png");
                None
            },
            expect: &["gallery.yaml:13:", "images[0].path", "images/four.png", "not found"],
        },
        Case {
            name: "a file that is not an image",
            apply: |d| {
                write(&d.join("images/text.png"), "this is text, not a picture\n");
                use_image(d, "text.png");
                None
            },
            expect: &[
                "gallery.yaml:13:",
                "images[0].path",
                "images/text.png",
                "not a PNG or JPEG",
            ],
        },
        Case {
            name: "a truncated PNG",
            apply: |d| {
                let bytes = std::fs::read(d.join("images/three.png")).unwrap();
                write(&d.join("images/cut.png"), &bytes[..bytes.len() / 2]);
                use_image(d, "cut.png");
                None
            },
            expect: &[
                "gallery.yaml:13:",
                "images[0].path",
                "images/cut.png",
                "cannot read the image",
            ],
        },
        Case {
            name: "a PNG header claiming 100000×100000 pixels",
            apply: |d| {
                write(&d.join("images/huge.png"), png_claiming(100_000, 100_000));
                use_image(d, "huge.png");
                None
            },
            expect: &[
                "gallery.yaml:13:",
                "images[0].path",
                "images/huge.png",
                "100000×100000",
                "16384-pixel limit",
            ],
        },
        Case {
            name: "a grey image for an RGB model (refused, not converted)",
            apply: |d| {
                replace(
                    d,
                    "channels: 1, mean: [0.1307], std: [0.3081]",
                    "channels: 3, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]",
                );
                None
            },
            expect: &[
                "gallery.yaml:13:",
                "images[0].path",
                "1 channel(s)",
                "model `lenet` takes 3",
            ],
        },
        Case {
            name: "weights file truncated",
            apply: |d| {
                let bytes = std::fs::read(d.join("models/lenet5-mnist.safetensors")).unwrap();
                write(&d.join("models/cut.safetensors"), &bytes[..bytes.len() / 2]);
                use_weights(d, "cut.safetensors");
                None
            },
            expect: &["models/cut.safetensors", "cannot read the weights", "truncated"],
        },
        Case {
            name: "weights with a missing tensor",
            apply: |d| {
                let mut t = lenet_weights(d);
                t.remove("conv2.bias");
                candle_core::safetensors::save(&t, d.join("models/edited.safetensors")).unwrap();
                use_weights(d, "edited.safetensors");
                None
            },
            expect: &["models/edited.safetensors", "tensor `conv2.bias` is missing", "[16]"],
        },
        Case {
            name: "weights with a wrong shape",
            apply: |d| {
                let mut t = lenet_weights(d);
                t.insert(
                    "fc3.weight".into(),
                    Tensor::zeros((9, 84), DType::F32, &Device::Cpu).unwrap(),
                );
                candle_core::safetensors::save(&t, d.join("models/edited.safetensors")).unwrap();
                use_weights(d, "edited.safetensors");
                None
            },
            expect: &[
                "models/edited.safetensors",
                "tensor `fc3.weight`",
                "[9, 84]",
                "expects [10, 84]",
            ],
        },
        Case {
            name: "a legacy .pth",
            apply: |d| {
                write(&d.join("models/old.pth"), common::pth::legacy_pth_bytes());
                use_weights(d, "old.pth");
                None
            },
            expect: &["models/old.pth", "legacy", "torch.save", "safetensors"],
        },
        Case {
            name: "a path that escapes the site root: ../../etc/passwd",
            apply: |d| {
                // Enough `..` to reach / from any temp folder.
                replace(
                    d,
                    "classes: classes.txt",
                    &format!("classes: {}etc/passwd", "../".repeat(24)),
                );
                None
            },
            expect: &[
                "gallery.yaml:9:",
                "models[0].classes",
                "leads to `/etc/passwd`, outside the site root",
                "site.allow_outside_root: true",
            ],
        },
        Case {
            name: "a path that escapes the site root: an absolute path",
            apply: |d| {
                let o = outside();
                let abs = o.path().join("three.png");
                replace(d, "path: images/three.png", &format!("path: {}", abs.display()));
                Some(o)
            },
            expect: &[
                "gallery.yaml:13:",
                "images[0].path",
                "outside the site root",
                "site.allow_outside_root",
            ],
        },
        Case {
            name: "a path that escapes the site root: a symlink out",
            apply: |d| {
                let o = outside();
                std::os::unix::fs::symlink(o.path().join("lenet.safetensors"), d.join("models/link.safetensors"))
                    .unwrap();
                use_weights(d, "link.safetensors");
                Some(o)
            },
            expect: &[
                "gallery.yaml:7:",
                "models[0].weights",
                "`models/link.safetensors` leads to",
                "outside the site root",
                "site.allow_outside_root",
            ],
        },
        Case {
            name: "a path that escapes the site root: a note symlinked out",
            apply: |d| {
                let o = outside();
                std::os::unix::fs::symlink(o.path().join("note.md"), d.join("content/borrowed.md")).unwrap();
                Some(o)
            },
            expect: &[
                "content/borrowed.md",
                "outside the site root",
                "site.allow_outside_root",
            ],
        },
        Case {
            name: "a path that escapes the site root: a theme",
            apply: |d| {
                replace(
                    d,
                    "  description: \"A small site",
                    "  theme: ../../etc\n  description: \"A small site",
                );
                None
            },
            expect: &[
                "gallery.yaml:3:",
                "site.theme",
                "`../../etc` is not a theme folder name",
            ],
        },
        Case {
            name: "a note with invalid UTF-8",
            apply: |d| {
                write(&d.join("content/latin1.md"), b"# Notes\n\ncaf\xe9\n");
                None
            },
            expect: &["content/latin1.md:3:", "not valid UTF-8", "0xE9"],
        },
        Case {
            name: "a note whose front matter is malformed",
            apply: |d| {
                write(&d.join("content/broken.md"), "---\ntitle: x\nweight: [1,\n---\nbody\n");
                None
            },
            expect: &["content/broken.md:", "front matter"],
        },
    ]
}

#[test]
fn every_bad_input_fails_cleanly_and_leaves_the_site_untouched() {
    let good = common::fixture("basic");
    let cfg = good.path().join("gallery.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    write(
        &cfg,
        format!("{}{METHODS}", text.trim_end_matches('\n').to_owned() + "\n"),
    );
    let out = cli_build(good.path());
    assert!(
        out.status.success(),
        "the good site builds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = snapshot(&good.path().join("public"));
    assert!(before.contains_key(Path::new("manifest.json")));

    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(good.path(), dir.path());
        let _keep = (case.apply)(dir.path());
        let out = cli_build(dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        let mut problems = Vec::new();
        if out.status.success() || out.status.code().is_none() {
            problems.push(format!("exit status {:?}, expected a non-zero exit code", out.status));
        }
        if err.contains("panicked") {
            problems.push("panicked".to_string());
        }
        for part in case.expect {
            if !err.contains(part) {
                problems.push(format!("the error lacks `{part}`"));
            }
        }
        let after = snapshot(&dir.path().join("public"));
        if after != before {
            let changed: Vec<_> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .take(5)
                .map(|k| k.display().to_string())
                .collect();
            problems.push(format!("the previous output changed: {}", changed.join(", ")));
        }
        let staging: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("staging"))
            .collect();
        if !staging.is_empty() {
            problems.push(format!("staging left behind: {staging:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {}",
                case.name,
                problems.join("; "),
                err.trim()
            ));
        }
        if std::env::var_os("BAD_INPUT_VERBOSE").is_some() {
            eprintln!("{}:\n  {}", case.name, err.lines().last().unwrap_or_default());
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
