//! The draw-a-digit playground: its in-browser network (static/playground.js with the
//! build's net.js) against the Rust forward pass on the 2,000 held-out digits and the Rust
//! saliency, under Node; and the built page in Chromium, drawn on by pointer input, from
//! file:// and from an HTTP server under a sub-path. Needs Node and the npm packages of
//! tests/browser (`npm ci --prefix tests/browser`), and Chromium (`.ci/run` installs both).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::Command;

use base64::Engine;
use candle_core::{Device, Tensor};
use cnnscope::build::Site;
use cnnscope::models::{self, InputSpec, Select, Tap};
use serde_json::{json, Value};

use common::{assert_has, load_err};

fn b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs a script of tests/browser with Node and parses the JSON it prints last.
fn node(script: &str, args: &[&str]) -> Value {
    let dir = common::repo().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the browser tests' npm packages are missing: run `npm ci --prefix tests/browser`"
    );
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("node runs (install Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node {script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn the_browser_network_matches_rust_on_the_held_out_digits() {
    let spec = InputSpec {
        height: 28,
        width: 28,
        channels: 1,
    };
    let arch = models::architecture("lenet5").unwrap();
    let lm = models::load(arch, &common::repo().join("models/lenet5-mnist.safetensors"), &spec, 10).unwrap();
    let digits = cnnscope::data::idx::read_digits(&common::repo().join("data/mnist")).unwrap();
    let (first, n) = (8000, 2000);
    let inputs: Vec<f32> = (first..first + n)
        .flat_map(|i| {
            digits
                .image(i)
                .iter()
                .map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081)
                .collect::<Vec<_>>()
        })
        .collect();
    let x = Tensor::from_slice(&inputs, (n, 1, 28, 28), &Device::Cpu).unwrap();
    let logits = lm.model.forward(&x, &mut Tap::default()).unwrap();
    let predicted: Vec<u32> = logits.argmax(1).unwrap().to_vec1().unwrap();
    let logits: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    // Saliency of the predicted class on a few digits, and of another class on one.
    let picks: Vec<(usize, usize)> = [0usize, 1, 2, 3, 4, 17]
        .iter()
        .map(|&i| (i, predicted[i] as usize))
        .chain([(5, (predicted[5] as usize + 3) % 10)])
        .collect();
    let saliency: Vec<Value> = picks
        .iter()
        .map(|&(i, t)| {
            let xi = x.narrow(0, i, 1).unwrap();
            let g = models::gradients(lm.model.as_ref(), &xi, &[t], Select::None).unwrap();
            json!({"index": i, "target": t, "grad": b64(&g.input.flatten_all().unwrap().to_vec1::<f32>().unwrap())})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net.js");
    std::fs::write(
        &net,
        cnnscope::pages::playground::net_js(&lm, 0.1307, 0.3081, &(0..10).map(|c| c.to_string()).collect::<Vec<_>>())
            .unwrap(),
    )
    .unwrap();
    let cases = dir.path().join("cases.json");
    let body = json!({"n": n, "inputs": b64(&inputs), "logits": b64(&logits), "saliency": saliency});
    std::fs::write(&cases, body.to_string()).unwrap();
    let pg = common::repo().join("themes/default/playground.js");
    let r = node(
        "check_net.mjs",
        &[pg.to_str().unwrap(), net.to_str().unwrap(), cases.to_str().unwrap()],
    );
    eprintln!("JS against Rust: {r}");
    assert_eq!(r["n"], 2000);
    assert_eq!(r["mismatches"], 0, "{r}");
    assert!(r["maxDiff"].as_f64().unwrap() < 1e-4, "logits differ: {r}");
    assert!(r["saliencyDiff"].as_f64().unwrap() < 1e-4, "saliency differs: {r}");
    // MNIST's preparation: the bar (5:10 tall) fits 20 px, centred by mass.
    let b = r["box"].as_array().unwrap();
    assert_eq!(b[1], 20, "{r}");
    assert!((9..=11).contains(&b[0].as_u64().unwrap()), "{r}");
    for c in r["centre"].as_array().unwrap() {
        assert!((c.as_f64().unwrap() - 14.0).abs() <= 0.5, "{r}");
    }
    assert_eq!(r["empty"], true);
}

/// Builds the fixture site (LeNet-5 with a playground) and returns its folder.
fn built_site() -> (tempfile::TempDir, PathBuf) {
    let (dir, cfg) = common::fixture_with_model_keys("    methods: [{ name: saliency }]\n");
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    (dir, out)
}

fn check_drawings(r: &Value) {
    assert_eq!(r["errors"].as_array().unwrap().len(), 0, "page errors: {r}");
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for x in results {
        let digit = x["digit"].as_str().unwrap();
        let shown = x["prediction"].as_str().unwrap();
        // The class's name first, then its probability.
        assert_eq!(
            shown.split(' ').next(),
            Some(digit),
            "drew {digit}, the page says {shown}"
        );
    }
}

#[test]
fn drawing_digits_in_chromium_from_file_urls() {
    let (_dir, out) = built_site();
    let page = out.join("models/lenet/playground/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_has(
        &html,
        &["id=\"prediction\"", "src=\"net.js\"", "../../../static/playground.js"],
    );
    let model = std::fs::read_to_string(out.join("models/lenet/index.html")).unwrap();
    assert!(
        model.contains("playground/index.html"),
        "the model page links the playground"
    );
    let image = std::fs::read_to_string(out.join("models/lenet/images/three/index.html")).unwrap();
    assert!(
        image.contains("playground/index.html"),
        "the image page links the playground"
    );
    let url = format!("file://{}", page.display());
    check_drawings(&node("playground.mjs", &[&url]));
}

/// Serves `root` under `/gallery/` over HTTP on a free port, as GitHub Pages serves a
/// project site under its sub-path; returns the port.
fn serve_under_sub_path(root: PathBuf) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut line = String::new();
                if BufReader::new(s.try_clone().unwrap()).read_line(&mut line).is_err() {
                    return;
                }
                let path = line
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap()
                    .to_string();
                let found = path
                    .strip_prefix("/gallery/")
                    .filter(|p| !p.split('/').any(|c| c == ".."))
                    .map(|p| root.join(p))
                    .map(|p| if p.is_dir() { p.join("index.html") } else { p })
                    .filter(|p| p.is_file());
                let (status, body, kind) = match found {
                    Some(p) => {
                        let mut b = Vec::new();
                        std::fs::File::open(&p).unwrap().read_to_end(&mut b).unwrap();
                        let kind = match p.extension().and_then(|e| e.to_str()) {
                            Some("html") => "text/html; charset=utf-8",
                            Some("js") => "text/javascript",
                            Some("css") => "text/css",
                            Some("png") => "image/png",
                            Some("svg") => "image/svg+xml",
                            _ => "application/octet-stream",
                        };
                        ("200 OK", b, kind)
                    }
                    None => ("404 Not Found", b"not found".to_vec(), "text/plain"),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    port
}

#[test]
fn drawing_digits_in_chromium_under_a_sub_path() {
    let (_dir, out) = built_site();
    let port = serve_under_sub_path(out.clone());
    let url = format!("http://127.0.0.1:{port}/gallery/models/lenet/playground/");
    check_drawings(&node("playground.mjs", &[&url]));
}

#[test]
fn which_models_get_a_playground() {
    // A model that cannot have one, asked for one: the key and line.
    let dir = tempfile::tempdir().unwrap();
    let repo = common::repo();
    let cfg = common::write_config(
        dir.path(),
        &format!(
            "site: {{ title: t, allow_outside_root: true }}\nmodels:\n  - id: eff\n    arch: efficientnet-lite0\n    weights: {}\n    classes: {}\n    input: {{ size: [224, 224], channels: 3, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }}\n    methods: []\n    playground: true\n",
            repo.join("models/efficientnet-lite0.safetensors").display(),
            repo.join("data/imagenet/imagenet-classes.txt").display()
        ),
    );
    assert_has(
        &load_err(&cfg),
        &[
            "gallery.yaml:9:",
            "models[0].playground",
            "cannot have a playground",
            "28×28 grey input",
            "224×224 with 3",
        ],
    );
    let (dir, cfg) = common::fixture_with_model_keys("    methods: [{ name: saliency }]\n    playground: false\n");
    let site = Site::load(&cfg).unwrap();
    let out = dir.path().join("public");
    site.build(&out, &|_| {}).unwrap();
    assert!(!out.join("models/lenet/playground").exists());
    assert!(!std::fs::read_to_string(out.join("models/lenet/index.html"))
        .unwrap()
        .contains("playground/"));
}
