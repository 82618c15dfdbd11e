//! The torchvision architectures (ResNet, VGG, AlexNet, MobileNetV2): state-dict names and
//! shapes, parameter counts, declared layer shapes against the forward pass, gradients
//! (checked by finite differences for ResNet-18); weight files (zip `.pth`, f16
//! safetensors, refused legacy `.pth`, wrong shapes); a site built with a ResNet-18.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use cnnscope::models::{self, InputSpec, Model, Select, Tap};

fn rgb(size: usize) -> InputSpec {
    InputSpec {
        height: size,
        width: size,
        channels: 3,
    }
}

/// Random weights of the expected shapes, scaled so that activations neither vanish nor
/// explode (He-like for weights, batch norm near the identity, running_var 1).
fn random_weights(tensors: &[(String, Vec<usize>)], dtype: DType) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    tensors
        .iter()
        .map(|(name, shape)| {
            let t = if name.ends_with("running_var") {
                Tensor::ones(shape.as_slice(), DType::F32, &dev)
            } else if shape.len() >= 2 {
                let fan_in: usize = shape[1..].iter().product();
                Tensor::randn(0f32, (1.0 / fan_in as f32).sqrt(), shape.as_slice(), &dev)
            } else if name.ends_with(".weight") {
                // A batch norm's scale.
                Tensor::randn(1f32, 0.1, shape.as_slice(), &dev)
            } else {
                Tensor::randn(0f32, 0.05, shape.as_slice(), &dev)
            };
            (name.clone(), t.unwrap().to_dtype(dtype).unwrap())
        })
        .collect()
}

fn build(id: &str, weights: &HashMap<String, Tensor>, input: &InputSpec, dtype: DType) -> Box<dyn Model> {
    let arch = models::architecture(id).unwrap();
    let vb = VarBuilder::from_tensors(weights.clone(), dtype, &Device::Cpu);
    (arch.build)(vb, input, 1000).unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())
}

/// What a test knows about an architecture from torchvision.
struct Expected {
    id: &'static str,
    /// `sum(p.numel() for p in model.parameters())`.
    parameters: usize,
    /// `len(state_dict())` less the `num_batches_tracked` entries.
    tensors: usize,
    /// A few state-dict entries.
    spot: &'static [(&'static str, &'static [usize])],
    /// Input side for the forward pass that checks the layer shapes.
    size: usize,
    /// Input side for the gradient check.
    grad_size: usize,
}

/// Names and shapes, parameter counts, the forward pass against `layers()`, and gradients.
fn check(e: Expected) {
    let start = std::time::Instant::now();
    let arch = models::architecture(e.id).unwrap_or_else(|| panic!("{} is registered", e.id));
    let tensors = (arch.tensors)(&rgb(224), 1000);
    let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), tensors.len(), "{}: tensor names are unique", e.id);
    assert_eq!(tensors.len(), e.tensors, "{}: number of state-dict tensors", e.id);
    for (name, shape) in e.spot {
        let found = tensors.iter().find(|(n, _)| n == name);
        assert_eq!(
            found.map(|(_, s)| s.as_slice()),
            Some(*shape),
            "{}: tensor {name}",
            e.id
        );
    }
    let trainable: usize = tensors
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(trainable, e.parameters, "{}: trainable numbers in the state dict", e.id);

    // Input checks.
    assert!((arch.check_input)(&rgb(e.size)).is_ok());
    let gray = InputSpec {
        channels: 1,
        ..rgb(224)
    };
    assert!((arch.check_input)(&gray).is_err(), "{}: 3 channels required", e.id);
    let min = if e.id == "alexnet" { 63 } else { 32 };
    assert!((arch.check_input)(&rgb(min)).is_ok(), "{}: {min} is enough", e.id);
    assert!(
        (arch.check_input)(&rgb(min - 1)).is_err(),
        "{}: {} is too small",
        e.id,
        min - 1
    );

    let weights = random_weights(&tensors, DType::F32);
    let model = build(e.id, &weights, &rgb(e.size), DType::F32);
    assert_eq!(model.arch(), e.id);
    assert_eq!(model.num_classes(), 1000);
    let layers = model.layers();
    let total: usize = layers.iter().map(|l| l.parameters).sum();
    assert_eq!(total, e.parameters, "{}: parameter count", e.id);
    for l in layers {
        if let Some(w) = &l.weight {
            let (_, shape) = tensors.iter().find(|(n, _)| n == w).expect("weight tensor exists");
            let rank = if l.kind == models::LayerKind::Conv { 4 } else { 2 };
            assert_eq!(shape.len(), rank, "{}: {w}", e.id);
        }
    }
    let cam = layers
        .iter()
        .find(|l| l.name == arch.gradcam_layer)
        .unwrap_or_else(|| panic!("{}: Grad-CAM layer {} is a layer", e.id, arch.gradcam_layer));
    assert_eq!(cam.output_shape.len(), 3, "{}: Grad-CAM layer has maps", e.id);

    // The forward pass produces the declared layers, in order, with the declared shapes.
    let x = Tensor::randn(0f32, 1.0, (1, 3, e.size, e.size), &Device::Cpu).unwrap();
    let mut tap = Tap::new(Select::All, Select::None);
    let logits = model.forward(&x, &mut tap).unwrap();
    assert_eq!(logits.dims(), &[1, 1000], "{}: logits", e.id);
    assert!(all_finite(&logits), "{}: finite logits", e.id);
    let got: Vec<(&str, &[usize])> = tap
        .activations
        .iter()
        .map(|(n, a)| (n.as_str(), &a.dims()[1..]))
        .collect();
    let want: Vec<(&str, &[usize])> = layers
        .iter()
        .map(|l| (l.name.as_str(), l.output_shape.as_slice()))
        .collect();
    assert_eq!(got, want, "{}: activations against layers()", e.id);
    assert!(tap.activations.iter().all(|(_, a)| a.dims()[0] == 1));
    let forward = start.elapsed();

    // Gradients reach the input and every layer.
    let model = build(e.id, &weights, &rgb(e.grad_size), DType::F32);
    let x = Tensor::randn(0f32, 1.0, (1, 3, e.grad_size, e.grad_size), &Device::Cpu).unwrap();
    let g = models::gradients(model.as_ref(), &x, &[7], Select::All).unwrap();
    assert_eq!(g.input.dims(), x.dims(), "{}: input gradient shape", e.id);
    assert!(all_finite(&g.input), "{}: finite input gradient", e.id);
    assert!(max_abs(&g.input) > 0.0, "{}: nonzero input gradient", e.id);
    assert_eq!(g.layers.len(), model.layers().len(), "{}: every layer probed", e.id);
    for ((name, a, grad), l) in g.layers.iter().zip(model.layers()) {
        assert_eq!(name, &l.name);
        assert_eq!(&a.dims()[1..], l.output_shape.as_slice(), "{}: {name}", e.id);
        assert_eq!(grad.dims(), a.dims(), "{}: gradient of {name}", e.id);
    }
    let cam_grad = &g.layers.iter().find(|(n, _, _)| n == arch.gradcam_layer).unwrap().2;
    assert!(max_abs(cam_grad) > 0.0, "{}: gradient at the Grad-CAM layer", e.id);
    eprintln!(
        "{}: forward at {}×{} {:.1?}, gradients at {}×{} {:.1?}",
        e.id,
        e.size,
        e.size,
        forward,
        e.grad_size,
        e.grad_size,
        start.elapsed() - forward
    );
}

#[test]
fn resnet18() {
    check(Expected {
        id: "resnet18",
        parameters: 11_689_512,
        tensors: 102,
        spot: &[
            ("conv1.weight", &[64, 3, 7, 7]),
            ("bn1.running_mean", &[64]),
            ("layer1.0.conv1.weight", &[64, 64, 3, 3]),
            ("layer1.1.bn2.running_var", &[64]),
            ("layer2.0.conv1.weight", &[128, 64, 3, 3]),
            ("layer2.0.downsample.0.weight", &[128, 64, 1, 1]),
            ("layer2.0.downsample.1.weight", &[128]),
            ("layer4.1.conv2.weight", &[512, 512, 3, 3]),
            ("fc.weight", &[1000, 512]),
            ("fc.bias", &[1000]),
        ],
        size: 224,
        grad_size: 64,
    });
}

#[test]
fn resnet34() {
    check(Expected {
        id: "resnet34",
        parameters: 21_797_672,
        tensors: 182,
        spot: &[
            ("layer3.5.conv2.weight", &[256, 256, 3, 3]),
            ("layer3.0.downsample.0.weight", &[256, 128, 1, 1]),
            ("layer4.2.bn2.bias", &[512]),
            ("fc.weight", &[1000, 512]),
        ],
        size: 224,
        grad_size: 32,
    });
}

#[test]
fn resnet50() {
    check(Expected {
        id: "resnet50",
        parameters: 25_557_032,
        tensors: 267,
        spot: &[
            ("layer1.0.conv1.weight", &[64, 64, 1, 1]),
            ("layer1.0.conv3.weight", &[256, 64, 1, 1]),
            ("layer1.0.downsample.0.weight", &[256, 64, 1, 1]),
            ("layer1.1.conv1.weight", &[64, 256, 1, 1]),
            ("layer2.0.conv2.weight", &[128, 128, 3, 3]),
            ("layer2.0.downsample.0.weight", &[512, 256, 1, 1]),
            ("layer4.2.conv3.weight", &[2048, 512, 1, 1]),
            ("layer4.2.bn3.running_var", &[2048]),
            ("fc.weight", &[1000, 2048]),
        ],
        size: 224,
        grad_size: 32,
    });
}

#[test]
fn vgg11() {
    check(Expected {
        id: "vgg11",
        parameters: 132_863_336,
        tensors: 22,
        spot: &[
            ("features.0.weight", &[64, 3, 3, 3]),
            ("features.3.weight", &[128, 64, 3, 3]),
            ("features.18.weight", &[512, 512, 3, 3]),
            ("features.18.bias", &[512]),
            ("classifier.0.weight", &[4096, 25088]),
            ("classifier.3.weight", &[4096, 4096]),
            ("classifier.6.weight", &[1000, 4096]),
        ],
        size: 224,
        grad_size: 32,
    });
}

#[test]
fn vgg11_bn() {
    check(Expected {
        id: "vgg11_bn",
        parameters: 132_868_840,
        tensors: 54,
        spot: &[
            ("features.0.weight", &[64, 3, 3, 3]),
            ("features.1.running_mean", &[64]),
            ("features.4.weight", &[128, 64, 3, 3]),
            ("features.25.weight", &[512, 512, 3, 3]),
            ("features.26.running_var", &[512]),
            ("classifier.0.weight", &[4096, 25088]),
        ],
        size: 224,
        grad_size: 32,
    });
}

#[test]
fn vgg16() {
    check(Expected {
        id: "vgg16",
        parameters: 138_357_544,
        tensors: 32,
        spot: &[
            ("features.2.weight", &[64, 64, 3, 3]),
            ("features.28.weight", &[512, 512, 3, 3]),
            ("classifier.0.weight", &[4096, 25088]),
            ("classifier.6.bias", &[1000]),
        ],
        size: 224,
        grad_size: 32,
    });
}

#[test]
fn vgg16_bn() {
    check(Expected {
        id: "vgg16_bn",
        parameters: 138_365_992,
        tensors: 84,
        spot: &[
            ("features.3.weight", &[64, 64, 3, 3]),
            ("features.40.weight", &[512, 512, 3, 3]),
            ("features.41.running_mean", &[512]),
            ("classifier.3.weight", &[4096, 4096]),
        ],
        size: 224,
        grad_size: 32,
    });
}

#[test]
fn alexnet() {
    check(Expected {
        id: "alexnet",
        parameters: 61_100_840,
        tensors: 16,
        spot: &[
            ("features.0.weight", &[64, 3, 11, 11]),
            ("features.3.weight", &[192, 64, 5, 5]),
            ("features.6.weight", &[384, 192, 3, 3]),
            ("features.8.weight", &[256, 384, 3, 3]),
            ("features.10.weight", &[256, 256, 3, 3]),
            ("classifier.1.weight", &[4096, 9216]),
            ("classifier.4.weight", &[4096, 4096]),
            ("classifier.6.weight", &[1000, 4096]),
        ],
        size: 224,
        grad_size: 96,
    });
}

#[test]
fn mobilenet_v2() {
    check(Expected {
        id: "mobilenet_v2",
        parameters: 3_504_872,
        tensors: 262,
        spot: &[
            ("features.0.0.weight", &[32, 3, 3, 3]),
            ("features.0.1.running_var", &[32]),
            ("features.1.conv.0.0.weight", &[32, 1, 3, 3]),
            ("features.1.conv.0.1.weight", &[32]),
            ("features.1.conv.1.weight", &[16, 32, 1, 1]),
            ("features.1.conv.2.running_mean", &[16]),
            ("features.2.conv.0.0.weight", &[96, 16, 1, 1]),
            ("features.2.conv.1.0.weight", &[96, 1, 3, 3]),
            ("features.2.conv.2.weight", &[24, 96, 1, 1]),
            ("features.2.conv.3.weight", &[24]),
            ("features.17.conv.2.weight", &[320, 960, 1, 1]),
            ("features.18.0.weight", &[1280, 320, 1, 1]),
            ("features.18.1.bias", &[1280]),
            ("classifier.1.weight", &[1000, 1280]),
        ],
        size: 224,
        grad_size: 64,
    });
}

/// Layer shapes follow the configured input: VGG at 64×64 pools to 2×2 and averages up to 7×7;
/// AlexNet at its smallest input.
/// VGG and AlexNet run a convolution (and its batch norm) with the ReLU after it as one op
/// when a pass touches none of them but the ReLU: logits and input gradients (plain and
/// guided) equal those of a pass that keeps every layer, which runs each layer on its own.
#[test]
fn fused_plain_layers_equal_the_separate_ones() {
    for id in ["vgg11_bn", "alexnet"] {
        let arch = models::architecture(id).unwrap();
        let input = rgb(64);
        let weights = random_weights(&(arch.tensors)(&input, 1000), DType::F64);
        let model = build(id, &weights, &input, DType::F64);
        let x = Tensor::randn(0f64, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
        let fused = model.forward(&x, &mut Tap::default()).unwrap();
        let separate = model.forward(&x, &mut Tap::new(Select::All, Select::None)).unwrap();
        let d = max_abs(&(&fused - &separate).unwrap()) / max_abs(&separate);
        assert!(d < 1e-12, "{id}: logits differ by {d:e}");
        for guided in [false, true] {
            let grads = |layers| {
                if guided {
                    models::guided_gradients(model.as_ref(), &x, &[3, 5], layers).unwrap()
                } else {
                    models::gradients(model.as_ref(), &x, &[3, 5], layers).unwrap()
                }
            };
            let (a, b) = (grads(Select::None).input, grads(Select::All).input);
            assert!(max_abs(&b) > 0.0, "{id}: a gradient reaches the input");
            let d = max_abs(&(&a - &b).unwrap()) / max_abs(&b);
            assert!(d < 1e-10, "{id} guided {guided}: input gradients differ by {d:e}");
        }
    }
}

#[test]
fn output_shapes_follow_the_input_size() {
    let shape = |id: &str, size: usize, layer: &str| -> Vec<usize> {
        let arch = models::architecture(id).unwrap();
        let w = random_weights(&(arch.tensors)(&rgb(size), 10), DType::F32);
        let vb = VarBuilder::from_tensors(w, DType::F32, &Device::Cpu);
        let m = (arch.build)(vb, &rgb(size), 10).unwrap();
        m.layers()
            .iter()
            .find(|l| l.name == layer)
            .unwrap()
            .output_shape
            .clone()
    };
    assert_eq!(shape("resnet18", 64, "layer4"), [512, 2, 2]);
    assert_eq!(shape("resnet18", 224, "maxpool"), [64, 56, 56]);
    assert_eq!(shape("resnet50", 100, "layer4"), [2048, 4, 4]);
    assert_eq!(shape("alexnet", 63, "features.12"), [256, 1, 1]);
    assert_eq!(shape("alexnet", 224, "features.12"), [256, 6, 6]);
    assert_eq!(shape("alexnet", 63, "avgpool"), [256, 6, 6]);
    assert_eq!(shape("mobilenet_v2", 224, "features.18"), [1280, 7, 7]);
    assert_eq!(shape("mobilenet_v2", 100, "features.18"), [1280, 4, 4]);
    assert_eq!(shape("mobilenet_v2", 224, "classifier.1"), [10]);
}

/// The input gradient of ResNet-18 in f64 against central finite differences.
#[test]
fn resnet18_input_gradient_matches_finite_differences() {
    let arch = models::architecture("resnet18").unwrap();
    let input = rgb(32);
    let weights = random_weights(&(arch.tensors)(&input, 1000), DType::F64);
    let model = build("resnet18", &weights, &input, DType::F64);
    let x = Tensor::randn(0f64, 1.0, (1, 3, 32, 32), &Device::Cpu).unwrap();
    let target = 3;
    let g = models::gradients(model.as_ref(), &x, &[target], Select::None).unwrap();
    let grad = g.input.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let gmax = grad.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(gmax > 0.0);
    let xs = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let score = |v: &[f64]| -> f64 {
        let t = Tensor::from_slice(v, (1, 3, 32, 32), &Device::Cpu).unwrap();
        let logits = model.forward(&t, &mut Tap::default()).unwrap();
        logits.get(0).unwrap().get(target).unwrap().to_scalar::<f64>().unwrap()
    };
    // The largest gradient and pixels spread over the three channels.
    let argmax = (0..grad.len())
        .max_by(|&a, &b| grad[a].abs().total_cmp(&grad[b].abs()))
        .unwrap();
    let eps = 1e-5;
    for i in [argmax, 100, 1024 + 517, 2048 + 990, 3 * 1024 - 1] {
        let mut v = xs.clone();
        v[i] = xs[i] + eps;
        let up = score(&v);
        v[i] = xs[i] - eps;
        let down = score(&v);
        let fd = (up - down) / (2.0 * eps);
        let tol = 1e-4 * grad[i].abs().max(1e-2 * gmax);
        assert!(
            (fd - grad[i]).abs() <= tol,
            "pixel {i}: finite difference {fd} vs gradient {} (tolerance {tol})",
            grad[i]
        );
    }
}

// ---------------------------------------------------------------------------------------
// Weight files
// ---------------------------------------------------------------------------------------

const MNIST: InputSpec = InputSpec {
    height: 28,
    width: 28,
    channels: 1,
};

fn lenet_tensors() -> Vec<(String, Tensor)> {
    let map =
        candle_core::safetensors::load(common::repo().join("models/lenet5-mnist.safetensors"), &Device::Cpu).unwrap();
    let arch = models::architecture("lenet5").unwrap();
    // In state-dict order.
    (arch.tensors)(&MNIST, 10)
        .into_iter()
        .map(|(n, _)| {
            let t = map[&n].clone();
            (n, t)
        })
        .collect()
}

/// A held-out digit, normalised, as a `(1, 1, 28, 28)` batch.
fn digit() -> Tensor {
    let d = cnnscope::data::idx::read_digits(&common::repo().join("data/mnist")).unwrap();
    let x: Vec<f32> = d
        .image(d.len() - 1)
        .iter()
        .map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081)
        .collect();
    Tensor::from_vec(x, (1, 1, 28, 28), &Device::Cpu).unwrap()
}

fn lenet_logits(path: &Path) -> Vec<f32> {
    let arch = models::architecture("lenet5").unwrap();
    let m = models::load(arch, path, &MNIST, 10).unwrap();
    m.model
        .forward(&digit(), &mut Tap::default())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn load_error(path: &Path) -> String {
    let arch = models::architecture("lenet5").unwrap();
    match models::load(arch, path, &MNIST, 10) {
        Ok(_) => panic!("{} loads", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn zip_pth_gives_the_same_logits_as_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("lenet5.pth");
    common::pth::write_pth(&pth, &lenet_tensors());
    let want = lenet_logits(&common::repo().join("models/lenet5-mnist.safetensors"));
    let got = lenet_logits(&pth);
    assert_eq!(got, want);
    // The loader also reports every tensor as the file holds it.
    let read = models::read_weights(&pth).unwrap();
    for (name, t) in lenet_tensors() {
        let r = &read[&name];
        assert_eq!(r.dims(), t.dims(), "{name}");
        assert_eq!(max_abs(&(r - &t).unwrap()), 0.0, "{name}");
    }
}

#[test]
fn f16_safetensors_load_and_give_close_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lenet5-f16.safetensors");
    let half: HashMap<String, Tensor> = lenet_tensors()
        .into_iter()
        .map(|(n, t)| (n, t.to_dtype(DType::F16).unwrap()))
        .collect();
    candle_core::safetensors::save(&half, &path).unwrap();
    let want = lenet_logits(&common::repo().join("models/lenet5-mnist.safetensors"));
    let got = lenet_logits(&path);
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-2, "{got:?} vs {want:?}");
    }
}

#[test]
fn legacy_pth_is_refused_with_the_conversion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.pth");
    std::fs::write(&path, common::pth::legacy_pth_bytes()).unwrap();
    let msg = load_error(&path);
    assert!(msg.contains("legacy"), "{msg}");
    assert!(msg.contains("torch.save"), "{msg}");
    assert!(msg.contains("safetensors"), "{msg}");
}

#[test]
fn pth_with_a_wrong_shape_names_the_tensor_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.pth");
    let tensors: Vec<(String, Tensor)> = lenet_tensors()
        .into_iter()
        .map(|(n, t)| {
            if n == "fc3.weight" {
                (n, Tensor::zeros((10, 80), DType::F32, &Device::Cpu).unwrap())
            } else {
                (n, t)
            }
        })
        .collect();
    common::pth::write_pth(&path, &tensors);
    let msg = load_error(&path);
    assert!(msg.contains("fc3.weight"), "{msg}");
    assert!(msg.contains("[10, 80]"), "{msg}");
    assert!(msg.contains("[10, 84]"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// A site with a ResNet-18
// ---------------------------------------------------------------------------------------

#[test]
fn site_with_resnet18_builds_with_gradcam_at_layer4() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let arch = models::architecture("resnet18").unwrap();
    let weights: HashMap<String, Tensor> = random_weights(&(arch.tensors)(&rgb(64), 1000), DType::F16);
    candle_core::safetensors::save(&weights, root.join("resnet18.safetensors")).unwrap();
    let classes: String = (0..1000).map(|i| format!("class {i}\n")).collect();
    std::fs::write(root.join("classes.txt"), classes).unwrap();
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
    });
    img.save(root.join("picture.png")).unwrap();
    let cfg = common::write_config(
        root,
        r#"site:
  title: "ResNet-18 with random weights"
models:
  - id: resnet
    arch: resnet18
    weights: resnet18.safetensors
    classes: classes.txt
    input: { size: [64, 64], channels: 3, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }
methods: [{name: saliency}, {name: gradcam}]
targets: [predicted]
images:
  - id: picture
    path: picture.png
"#,
    );
    let site = cnnscope::build::Site::load(&cfg).unwrap();
    let out = root.join("public");
    site.build(&out, &|_| {}).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["models"][0]["arch"], "resnet18");
    assert_eq!(m["models"][0]["parameters"], 11_689_512);
    let arts = m["artifacts"].as_array().unwrap();
    let cams: Vec<_> = arts
        .iter()
        .filter(|a| a["kind"] == "attribution" && a["method"] == "gradcam")
        .collect();
    assert_eq!(cams.len(), 1, "one image, one target");
    assert_eq!(cams[0]["layer"], "layer4");
    assert_eq!(cams[0]["shape"], serde_json::json!([2, 2]));
    assert!(arts
        .iter()
        .any(|a| a["kind"] == "attribution" && a["method"] == "saliency"));
}

// ---------------------------------------------------------------------------------------
// Against PyTorch itself
// ---------------------------------------------------------------------------------------

/// Compares every architecture with PyTorch: logits, every named layer's output and the
/// input gradient of one logit, at 97×113 (odd sizes, adaptive pooling that averages up)
/// and 224×224 (logits and layers only; the gradient at 97×113 only, in f64), from weights saved by `torch.save` (so the zip
/// `.pth` reader is checked on PyTorch's own files, `num_batches_tracked` included).
///
/// Needs PyTorch, so it is ignored by default. Write the reference files with this script
/// (`python make_reference.py DIR`, about 3 GB, 2 minutes), then run
/// `CNNSCOPE_TORCH_REFERENCE=DIR cargo test --release --test torchvision -- --ignored`:
///
/// ```python
/// import sys, torch, torchvision
/// out = sys.argv[1]
/// torch.manual_seed(0)
/// archs = ["resnet18", "resnet34", "resnet50", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "alexnet", "mobilenet_v2"]
/// for arch in archs:
///     model = getattr(torchvision.models, arch)()
///     with torch.no_grad():  # batch norm that is not the identity
///         for m in model.modules():
///             if isinstance(m, torch.nn.BatchNorm2d):
///                 m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 2.0)
///                 m.weight.normal_(1, 0.1); m.bias.normal_(0, 0.1)
///     model.eval()
///     torch.save(model.state_dict(), f"{out}/{arch}.pth")
///     for (h, w) in [(97, 113), (224, 224)]:
///         ref, hooks = {}, []
///         for name, m in model.named_modules():
///             top = name.split(".")[0]
///             if name and not isinstance(m, torch.nn.Dropout) and (
///                     "." not in name or (top in ("features", "classifier") and name.count(".") == 1)):
///                 def hook(mod, inp, outp, name=name):  # cloned before any in-place ReLU
///                     ref["act." + name] = outp.detach().clone().contiguous()
///                 hooks.append(m.register_forward_hook(hook))
///         x = torch.randn(1, 3, h, w)
///         with torch.no_grad():
///             logits = model(x)
///         for hk in hooks:
///             hk.remove()
///         if (h, w) == (97, 113):  # the input gradient, in f64
///             xg = x.double().requires_grad_(True)
///             model.double()(xg)[0, 7].backward()
///             model.float()
///             ref["input_grad"] = xg.grad.clone()
///         ref.update(input=x, logits=logits.clone())
///         torch.save(ref, f"{out}/{arch}-{h}x{w}.pth")
/// ```
#[test]
#[ignore = "needs reference files written by PyTorch (CNNSCOPE_TORCH_REFERENCE)"]
fn matches_pytorch() {
    let dir = std::path::PathBuf::from(
        std::env::var_os("CNNSCOPE_TORCH_REFERENCE").expect("CNNSCOPE_TORCH_REFERENCE names the reference folder"),
    );
    // Largest difference relative to the largest reference value.
    let rel = |a: &Tensor, b: &Tensor| -> f64 {
        let (a, b) = (a.flatten_all().unwrap(), b.flatten_all().unwrap());
        assert_eq!(a.dims(), b.dims());
        max_abs(&(&a - &b).unwrap()) / max_abs(&b).max(1e-12)
    };
    let ids = [
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg11",
        "vgg11_bn",
        "vgg16",
        "vgg16_bn",
        "alexnet",
        "mobilenet_v2",
    ];
    for id in ids {
        let arch = models::architecture(id).unwrap();
        for (h, w) in [(97, 113), (224, 224)] {
            let start = std::time::Instant::now();
            let input = InputSpec {
                height: h,
                width: w,
                channels: 3,
            };
            let m = models::load(arch, &dir.join(format!("{id}.pth")), &input, 1000).unwrap();
            let r = models::read_weights(&dir.join(format!("{id}-{h}x{w}.pth"))).unwrap();
            let x = &r["input"];
            let mut tap = Tap::new(Select::All, Select::None);
            let logits = m.model.forward(x, &mut tap).unwrap();
            let mut worst = ("logits".to_string(), rel(&logits, &r["logits"]));
            let mut compared = 0;
            for (name, a) in &tap.activations {
                if let Some(want) = r.get(&format!("act.{name}")) {
                    let d = rel(a, want);
                    assert!(d < 1e-4, "{id} {h}×{w}: layer {name} differs by {d:e} (relative)");
                    compared += 1;
                    if d > worst.1 {
                        worst = (name.clone(), d);
                    }
                }
            }
            assert!(worst.1 < 1e-4, "{id} {h}×{w}: {} differs by {:e}", worst.0, worst.1);
            // MobileNetV2's `avgpool` is functional in torchvision: it has no hook.
            let unhooked = if id == "mobilenet_v2" { 1 } else { 0 };
            assert_eq!(
                compared + unhooked,
                m.model.layers().len(),
                "{id}: every layer compared"
            );
            // The input gradient in f64 (PyTorch's f32 gradient is itself off by up to 5e-3
            // of its largest value for vgg11_bn, where float rounding decides near-ties).
            let mut grad = String::new();
            if let Some(want) = r.get("input_grad") {
                let m = models::load_as(arch, &dir.join(format!("{id}.pth")), &input, 1000, DType::F64).unwrap();
                let x = x.to_dtype(DType::F64).unwrap();
                let g = models::gradients(m.model.as_ref(), &x, &[7], Select::None).unwrap();
                let d = rel(&g.input, want);
                assert!(d < 1e-9, "{id} {h}×{w}: input gradient differs by {d:e}");
                grad = format!(", input gradient (f64) {d:.1e}");
            }
            eprintln!(
                "{id} {h}×{w}: {compared} layers, worst {} {:.1e}{grad}, {:.1?}",
                worst.0,
                worst.1,
                start.elapsed()
            );
        }
    }
}

/// MobileNetV2's inverted residual blocks run as one op for f32 with constant weights
/// (`ops::mbconv`) and as separate ops when the weights take part in the gradient graph:
/// both must give the same logits bit for bit and the same input gradient up to the order
/// of float additions; the logits also agree with an f64 run.
#[test]
fn mobilenet_v2_fused_blocks_match_the_separate_ops() {
    let arch = models::architecture("mobilenet_v2").unwrap();
    let weights = random_weights(&(arch.tensors)(&rgb(64), 1000), DType::F32);
    // The same numbers as `Var`s: their convolutions are tracked, so the blocks run as
    // separate ops.
    let vars: HashMap<String, Tensor> = weights
        .iter()
        .map(|(k, v)| (k.clone(), candle_core::Var::from_tensor(v).unwrap().as_tensor().clone()))
        .collect();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let run = |w: &HashMap<String, Tensor>, dtype: DType| {
        let model = build("mobilenet_v2", w, &rgb(64), dtype);
        let g = models::gradients(model.as_ref(), &x.to_dtype(dtype).unwrap(), &[3, 7], Select::None).unwrap();
        (
            g.logits.to_dtype(DType::F64).unwrap(),
            g.input.to_dtype(DType::F64).unwrap(),
        )
    };
    let (fused_logits, fused_grad) = run(&weights, DType::F32);
    let (logits, grad) = run(&vars, DType::F32);
    let (logits64, _) = run(&weights, DType::F64);
    let rel = |a: &Tensor, b: &Tensor| max_abs(&(a - b).unwrap()) / max_abs(b);
    eprintln!(
        "fused vs separate: logits {:.1e}, input gradient {:.1e}; logits vs f64 {:.1e}",
        rel(&fused_logits, &logits),
        rel(&fused_grad, &grad),
        rel(&fused_logits, &logits64)
    );
    assert_eq!(rel(&fused_logits, &logits), 0.0, "logits");
    assert!(
        rel(&fused_grad, &grad) < 1e-5,
        "input gradient: {}",
        rel(&fused_grad, &grad)
    );
    assert!(rel(&fused_logits, &logits64) < 1e-5, "logits vs f64");
    assert!(max_abs(&grad) > 0.0);
}

/// Occlusion's patched forward for MobileNetV2 computes the early blocks only where each
/// patch reaches; its logits must equal those of the full copies.
#[test]
fn mobilenet_v2_patched_forward_equals_the_full_copies() {
    patched_forward_equals_the_full_copies("mobilenet_v2", 96);
}

/// The same for ResNets: the stem, its max-pool and the residual blocks (identity and
/// projection shortcuts, strided 3×3 and 1×1 convolutions) on boxes.
#[test]
fn resnet_patched_forward_equals_the_full_copies() {
    patched_forward_equals_the_full_copies("resnet18", 96);
    patched_forward_equals_the_full_copies("resnet50", 128);
}

fn patched_forward_equals_the_full_copies(arch_id: &str, size: usize) {
    let arch = models::architecture(arch_id).unwrap();
    let weights = random_weights(&(arch.tensors)(&rgb(size), 1000), DType::F32);
    let model = build(arch_id, &weights, &rgb(size), DType::F32);
    let x = Tensor::randn(0f32, 1.0, (1, 3, size, size), &Device::Cpu).unwrap();
    let (ph, pw) = (13, 9);
    let origins = vec![
        (0, 0),
        (0, size - pw),
        (size - ph, 0),
        (size - ph, size - pw),
        (40, 51),
        (7, 30),
    ];
    let patches = Tensor::randn(0f32, 1.0, (origins.len(), 3, ph, pw), &Device::Cpu).unwrap();
    let fast = model.forward_patched(&x, &patches, &origins).unwrap();
    let copies: Vec<Tensor> = origins
        .iter()
        .enumerate()
        .map(|(i, &(y, x0))| {
            let p = patches.get(i).unwrap().unsqueeze(0).unwrap();
            x.slice_assign(&[0..1, 0..3, y..y + ph, x0..x0 + pw], &p).unwrap()
        })
        .collect();
    let full = model
        .forward(&Tensor::cat(&copies, 0).unwrap(), &mut Tap::default())
        .unwrap();
    let diff = max_abs(&(&fast - &full).unwrap());
    eprintln!(
        "{arch_id}: patched vs full copies: max |diff| {diff:.1e} of {:.1e}",
        max_abs(&full)
    );
    assert!(diff <= 1e-5 * max_abs(&full), "{arch_id}: {diff}");
    // The copies differ from each other, so the patches were applied.
    assert!(max_abs(&(fast.get(0).unwrap() - fast.get(4).unwrap()).unwrap()) > 0.0);
}
