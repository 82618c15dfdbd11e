//! EfficientNet-Lite0 against the reference PyTorch implementation's outputs
//! (`tests/fixtures/efficientnet-lite0/`): logits, input gradients and Grad-CAM maps for
//! five photographs at 224×224.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use cnnscope::config::Input;
use cnnscope::methods::{gradcam, saliency, Ctx, Method, Output};
use cnnscope::models::{self, InputSpec, LoadedModel, Select};
use serde_json::Value;

const NAMES: [&str; 5] = ["chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field"];

fn input() -> Input {
    Input {
        height: 224,
        width: 224,
        channels: 3,
        mean: vec![127.0 / 255.0; 3],
        std: vec![128.0 / 255.0; 3],
    }
}

fn model() -> (LoadedModel, &'static models::Architecture) {
    let arch = models::architecture("efficientnet-lite0").unwrap();
    let spec = InputSpec {
        height: 224,
        width: 224,
        channels: 3,
    };
    let path = common::repo().join("models/efficientnet-lite0.safetensors");
    (models::load(arch, &path, &spec, 1000).unwrap(), arch)
}

fn fixtures() -> (HashMap<String, Tensor>, Value) {
    let dir = common::repo().join("tests/fixtures/efficientnet-lite0");
    let refs = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let top5 = serde_json::from_str(&std::fs::read_to_string(dir.join("reference-top5.json")).unwrap()).unwrap();
    (refs, top5)
}

fn image(name: &str) -> Tensor {
    let p = common::repo().join(format!("tests/fixtures/efficientnet-lite0/{name}-224.png"));
    cnnscope::data::image::prepare(&image::open(p).unwrap(), &input())
        .unwrap()
        .1
}

fn v(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// (Pearson correlation, ‖a − b‖ / ‖b‖).
fn compare(a: &[f64], b: &[f64]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb, mut d2, mut b2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
        d2 += (x - y) * (x - y);
        b2 += y * y;
    }
    (sab / (saa * sbb).sqrt(), (d2 / b2).sqrt())
}

#[test]
fn parameters_and_shapes() {
    let (m, _) = model();
    let layers = m.model.layers();
    let trainable: usize = layers.iter().map(|l| l.parameters).sum();
    let running: usize = m
        .tensors
        .iter()
        .filter(|(k, _)| k.contains("running_"))
        .map(|(_, t)| t.elem_count())
        .sum();
    let stored: usize = m.tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(stored, 4_694_024, "the numbers in the weights file");
    assert_eq!(
        trainable,
        stored - running,
        "trainable = stored − batch-norm running statistics"
    );
    let find = |n: &str| layers.iter().find(|l| l.name == n).unwrap().output_shape.clone();
    assert_eq!(find("stem"), vec![32, 112, 112]);
    assert_eq!(find("_blocks.15"), vec![320, 7, 7]);
    assert_eq!(find("head"), vec![1280, 7, 7]);
    assert_eq!(find("_fc"), vec![1000]);
}

#[test]
fn logits_and_top5_match_the_reference() {
    let (m, _) = model();
    let (refs, top5) = fixtures();
    for name in NAMES {
        let x = image(name);
        let mut tap = models::Tap::new(Select::All, Select::None);
        let logits = m.model.forward(&x, &mut tap).unwrap();
        // The declared shapes are the ones the forward pass produces.
        for (l, (n, a)) in m.model.layers().iter().zip(&tap.activations) {
            assert_eq!(&l.name, n);
            assert_eq!(&a.dims()[1..], l.output_shape.as_slice(), "{n}");
        }
        let ours = v(&logits);
        let theirs = v(&refs[&format!("{name}/logits")]);
        let max_ref = theirs.iter().fold(0f64, |a, b| a.max(b.abs()));
        let max_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        assert!(
            max_diff <= 1e-3 * max_ref,
            "{name}: logits differ by {max_diff} (max |logit| {max_ref})"
        );
        let mut order: Vec<usize> = (0..1000).collect();
        order.sort_by(|&a, &b| ours[b].total_cmp(&ours[a]));
        let expected: Vec<u64> = top5[name]["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[0].as_u64().unwrap())
            .collect();
        let got: Vec<u64> = order[..5].iter().map(|&i| i as u64).collect();
        assert_eq!(got, expected, "{name}: top-5 classes");
        eprintln!("{name}: logits max |diff| {max_diff:.2e} (max |logit| {max_ref:.2})");
    }
}

#[test]
fn input_gradients_and_gradcam_match_the_reference() {
    let (m, arch) = model();
    let (refs, top5) = fixtures();
    let inp = input();
    for name in NAMES {
        let x = image(name);
        let top = top5[name]["top_class"].as_u64().unwrap() as usize;
        let cx = Ctx::new(&m, arch, &inp, &x, top, top);
        let Output::Map(sal) = saliency::Saliency {}.run(&cx).unwrap() else {
            panic!()
        };
        let (r, e) = compare(&v(&sal.data), &v(&refs[&format!("{name}/input_grad")]));
        eprintln!("{name}: input_grad pearson {r:.6} rel L2 {e:.2e}");
        assert!(r >= 0.999 && e <= 1e-2, "{name} input_grad: pearson {r}, rel L2 {e}");
        for (layer, key) in [("_blocks.15", "gradcam_blocks15"), ("head", "gradcam_head")] {
            let spec = gradcam::GradCam::at(Some(layer));
            let Output::Map(cam) = spec.run(&cx).unwrap() else {
                panic!()
            };
            assert_eq!(cam.data.dims(), &[7, 7]);
            let (r, e) = compare(&v(&cam.data), &v(&refs[&format!("{name}/{key}")]));
            eprintln!("{name}: {key} pearson {r:.6} rel L2 {e:.2e}");
            assert!(r >= 0.999 && e <= 1e-2, "{name} {key}: pearson {r}, rel L2 {e}");
        }
    }
}

#[test]
fn the_micro_benchmark_runs() {
    let rows = cnnscope::bench::run(
        &common::repo().join("models/efficientnet-lite0.safetensors"),
        1,
        None,
        &|_| {},
    )
    .unwrap();
    assert_eq!(rows.len(), 7);
    // A smoke test: every row ran and gave a time (comparing times would make it flaky).
    assert!(
        rows.iter()
            .all(|(_, f, b)| f.is_finite() && b.is_finite() && *f > 0.0 && *b > 0.0),
        "{rows:?}"
    );
    let only = cnnscope::bench::run(
        &common::repo().join("models/efficientnet-lite0.safetensors"),
        1,
        Some("max-POOL"),
        &|_| {},
    )
    .unwrap();
    assert_eq!(only.len(), 1, "{only:?}");
}

/// Occlusion's patched forward computes the early layers only where each patch reaches;
/// its logits must equal those of the full copies, for patches at the corners, the
/// borders and inside, square or not, on a square photograph and on an odd-sized input.
#[test]
fn patched_forward_equals_the_full_copies() {
    let (m, _) = model();
    let photo = image("coffee");
    let odd = Tensor::randn(0f32, 1.0, (1, 3, 61, 90), &Device::Cpu).unwrap();
    for (x, shapes) in [(&photo, vec![(32, 32), (1, 1), (7, 13)]), (&odd, vec![(9, 20)])] {
        let (_, c, h, w) = x.dims4().unwrap();
        for (ph, pw) in shapes {
            let origins = vec![
                (0, 0),
                (0, w - pw),
                (h - ph, 0),
                (h - ph, w - pw),
                (h / 2, w / 3),
                (1, w / 2),
                (h / 3, 3.min(w - pw)),
            ];
            let patches = Tensor::randn(0f32, 1.0, (origins.len(), c, ph, pw), &Device::Cpu).unwrap();
            let fast = m.model.forward_patched(x, &patches, &origins).unwrap();
            // The full copies, made with candle's own ops.
            let mut copies = Vec::new();
            for (i, &(y0, x0)) in origins.iter().enumerate() {
                let p = patches.get(i).unwrap().unsqueeze(0).unwrap();
                copies.push(x.slice_assign(&[0..1, 0..c, y0..y0 + ph, x0..x0 + pw], &p).unwrap());
            }
            let full = m
                .model
                .forward(&Tensor::cat(&copies, 0).unwrap(), &mut Default::default())
                .unwrap();
            let (a, b) = (v(&fast), v(&full));
            let scale = b.iter().fold(0f64, |s, x| s.max(x.abs()));
            let diff = a.iter().zip(&b).fold(0f64, |s, (x, y)| s.max((x - y).abs()));
            eprintln!("{h}×{w}, {ph}×{pw} patches: max |diff| {diff:.2e} of max |logit| {scale:.2}");
            assert!(diff <= 1e-4 * scale.max(1.0), "{ph}×{pw} on {h}×{w}: {diff} vs {scale}");
            // The patches matter: the copies' logits differ from each other.
            assert!(a[..1000] != a[4000..5000]);
        }
    }
}
