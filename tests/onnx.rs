//! ONNX models (`arch: onnx`) against PyTorch: the small networks of `tests/data/onnx/`
//! (written by its `make_fixtures.py`, with PyTorch's logits and input gradients), exported
//! by both of PyTorch's exporters; the errors for what is not supported; and, with
//! `CNNSCOPE_ONNX_REFERENCE`, the built-in ResNet-18 and MobileNetV2 against their ONNX exports.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cnnscope::models::onnx::proto;
use cnnscope::models::{self, InputSpec, Select, Tap};
use prost::Message;

fn data() -> PathBuf {
    common::repo().join("tests/data/onnx")
}

fn reference(name: &str) -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(data().join(format!("{name}.safetensors")), &Device::Cpu).unwrap()
}

fn load(path: &Path, spec: &InputSpec, classes: usize) -> models::LoadedModel {
    let arch = models::onnx::architecture(path, spec, classes).unwrap_or_else(|e| panic!("{e}"));
    models::load(arch, path, spec, classes).unwrap_or_else(|e| panic!("{e}"))
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn largest(a: &Tensor) -> f32 {
    a.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Logits and the input gradient of both exports of `name` match PyTorch's.
fn check(name: &str) {
    let r = reference(name);
    let x = &r["x"];
    let (_, c, h, w) = x.dims4().unwrap();
    let target = r["target"].to_vec1::<i64>().unwrap()[0] as usize;
    let classes = r["logits"].dim(1).unwrap();
    let spec = InputSpec {
        channels: c,
        height: h,
        width: w,
    };
    for exporter in ["dynamo", "torchscript"] {
        let path = data().join(format!("{name}-{exporter}.onnx"));
        let m = load(&path, &spec, classes);
        let logits = m.model.forward(x, &mut Tap::default()).unwrap();
        let err = max_abs(&logits, &r["logits"]);
        assert!(
            err <= 1e-4 * largest(&r["logits"]).max(1.0),
            "{name}-{exporter}: logits differ by {err}"
        );
        let g = models::gradients(m.model.as_ref(), x, &[target, target], Select::None).unwrap();
        let err = max_abs(&g.input, &r["grad"]);
        assert!(
            err <= 1e-4 * largest(&r["grad"]).max(1e-3),
            "{name}-{exporter}: input gradients differ by {err} (largest {})",
            largest(&r["grad"])
        );
    }
}

#[test]
fn every_operator_matches_pytorch() {
    check("ops");
}

#[test]
fn a_residual_network_matches_pytorch() {
    check("residual");
}

#[test]
fn layers_are_named_after_the_modules() {
    let spec = InputSpec {
        channels: 3,
        height: 32,
        width: 27,
    };
    for exporter in ["dynamo", "torchscript"] {
        let m = load(&data().join(format!("residual-{exporter}.onnx")), &spec, 7);
        let names: Vec<&str> = m.model.layers().iter().map(|l| l.name.as_str()).collect();
        for want in ["layer1.0", "layer1.1", "layer1", "maxpool", "fc"] {
            assert!(names.contains(&want), "{exporter}: no layer `{want}` in {names:?}");
        }
        let arch = models::onnx::architecture(&data().join(format!("residual-{exporter}.onnx")), &spec, 7).unwrap();
        // The last spatial map before the pooling, by its outermost name.
        assert_eq!(arch.gradcam_layer, "layer1", "{exporter}");
        let fc = m.model.layers().iter().find(|l| l.name == "fc").unwrap();
        assert_eq!(fc.kind, models::LayerKind::Linear);
        assert_eq!(fc.parameters, 16 * 7 + 7);
        let l1 = m.model.layers().iter().find(|l| l.name == "layer1").unwrap();
        assert_eq!(l1.output_shape, vec![16, 4, 4]);
        // Blocks that add their input back are residual, and the overview folds them.
        let find = |n: &str| m.model.layers().iter().find(|l| l.name == n).unwrap();
        for n in ["layer1.0", "layer1.1", "layer1"] {
            assert!(find(n).residual, "{exporter}: {n} {:?}", find(n));
        }
        assert!(!find("layer1.0.conv1").residual);
        assert_eq!(find("layer1.0.conv1").group.as_deref(), Some("layer1.0"), "{exporter}");
        assert_eq!(find("fc").group, None);
        // A probe at a named layer sees that layer's gradient (conv + ReLU are not fused there).
        let x = Tensor::randn(0f32, 1.0, (1, 3, 32, 27), &Device::Cpu).unwrap();
        let g = models::gradients(m.model.as_ref(), &x, &[2], Select::Only(vec!["layer1".into()])).unwrap();
        assert_eq!(g.layers.len(), 1);
        assert_eq!(g.layers[0].1.dims(), &[1, 16, 4, 4]);
    }
}

/// Guided backpropagation's gradients are never those of plain backpropagation at a ReLU
/// with a negative gradient: the guided pass differs from the plain one.
#[test]
fn guided_backprop_replaces_the_relu_backward() {
    let r = reference("residual");
    let spec = InputSpec {
        channels: 3,
        height: 32,
        width: 27,
    };
    let m = load(&data().join("residual-dynamo.onnx"), &spec, 7);
    let x = r["x"].narrow(0, 0, 1).unwrap();
    let plain = models::gradients(m.model.as_ref(), &x, &[2], Select::None)
        .unwrap()
        .input;
    let guided = models::guided_gradients(m.model.as_ref(), &x, &[2], Select::None)
        .unwrap()
        .input;
    assert!(max_abs(&plain, &guided) > 1e-6);
}

fn expect_err(path: &Path, spec: &InputSpec, classes: usize) -> String {
    match models::onnx::architecture(path, spec, classes) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_file_the_node_and_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let spec = InputSpec {
        channels: 3,
        height: 32,
        width: 27,
    };
    let src = data().join("residual-torchscript.onnx");
    // Another input size than the file's.
    let e = expect_err(
        &src,
        &InputSpec {
            channels: 3,
            height: 30,
            width: 27,
        },
        7,
    );
    assert!(
        e.contains("residual-torchscript.onnx") && e.contains("30") && e.contains("dimension 2"),
        "{e}"
    );
    // Another class count.
    let e = expect_err(&src, &spec, 10);
    assert!(e.contains("[N, 10]") && e.contains("[1, 7]"), "{e}");
    // An operator that is not supported.
    let bytes = std::fs::read(&src).unwrap();
    let edited = |f: &dyn Fn(&mut proto::GraphProto)| -> Vec<u8> {
        let mut m = proto::decode(&bytes).unwrap();
        f(m.graph.as_mut().unwrap());
        m.encode_to_vec()
    };
    // The error for the file edited by `f`, written as `name`.
    let refused = |name: &str, f: &dyn Fn(&mut proto::GraphProto)| -> String {
        let p = dir.path().join(name);
        std::fs::write(&p, edited(f)).unwrap();
        expect_err(&p, &spec, 7)
    };
    let e = refused("unsupported.onnx", &|g| {
        g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap().op_type = "Elu".into()
    });
    assert!(
        e.contains("unsupported.onnx")
            && e.contains("(Elu)")
            && e.contains("not supported")
            && e.contains("node `/relu/Relu`"),
        "{e}"
    );
    // A final softmax: the hint to export the logits.
    let e = refused("softmax.onnx", &|g| {
        g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap().op_type = "Softmax".into()
    });
    assert!(
        e.contains("(Softmax)") && e.contains("without its final softmax"),
        "{e}"
    );
    // An attribute that is not supported.
    let e = refused("dilated.onnx", &|g| {
        let n = g.node.iter_mut().find(|n| n.op_type == "MaxPool").unwrap();
        n.attribute.retain(|a| a.name != "dilations");
        n.attribute.push(proto::AttributeProto {
            name: "dilations".into(),
            ints: vec![2, 2],
            r#type: 7,
            ..Default::default()
        });
    });
    assert!(
        e.contains("dilated.onnx") && e.contains("(MaxPool)") && e.contains("dilations"),
        "{e}"
    );
    // A node reading a value nothing computes.
    let e = refused("dangling.onnx", &|g| {
        g.node.iter_mut().find(|n| n.op_type == "MaxPool").unwrap().input[0] = "nowhere".into()
    });
    assert!(e.contains("dangling.onnx") && e.contains("`nowhere`"), "{e}");
    // Truncated.
    let p = dir.path().join("truncated.onnx");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = expect_err(&p, &spec, 7);
    assert!(e.contains("truncated.onnx") && e.contains("cannot read"), "{e}");
}

/// `CNNSCOPE_ONNX_REFERENCE=DIR` (written by `tests/data/onnx/make_equivalence.py DIR`): the
/// built-in ResNet-18 and MobileNetV2 on seeded random weights give the same logits, input
/// gradients and Grad-CAM maps as their ONNX exports with those weights.
#[test]
#[ignore = "needs CNNSCOPE_ONNX_REFERENCE (files made with PyTorch)"]
fn built_in_networks_equal_their_onnx_exports() {
    let (dir, spec) = (reference_dir("CNNSCOPE_ONNX_REFERENCE"), IMAGENET);
    for (arch, cam) in [("resnet18", "layer4"), ("mobilenet_v2", "features")] {
        let builtin = models::architecture(&arch.replace('_', "-"))
            .or(models::architecture(arch))
            .unwrap();
        let a = models::load(builtin, &dir.join(format!("{arch}.safetensors")), &spec, 1000).unwrap();
        let onnx = dir.join(format!("{arch}.onnx"));
        let b = load(&onnx, &spec, 1000);
        let x = Tensor::randn(0f32, 1.0, (2, 3, 224, 224), &Device::Cpu).unwrap();
        let la = a.model.forward(&x, &mut Tap::default()).unwrap();
        let lb = b.model.forward(&x, &mut Tap::default()).unwrap();
        let err = max_abs(&la, &lb);
        assert!(err <= 1e-3 * largest(&la), "{arch}: logits differ by {err}");
        let ga = models::gradients(
            a.model.as_ref(),
            &x,
            &[1, 2],
            Select::Only(vec![builtin.gradcam_layer.into()]),
        )
        .unwrap();
        let onnx_cam = models::onnx::architecture(&onnx, &spec, 1000).unwrap().gradcam_layer;
        assert!(onnx_cam.starts_with(cam), "{arch}: default CAM layer {onnx_cam}");
        let gb = models::gradients(b.model.as_ref(), &x, &[1, 2], Select::Only(vec![onnx_cam.into()])).unwrap();
        let r = pearson(&ga.input, &gb.input);
        assert!(r >= 0.999, "{arch}: saliency Pearson {r}");
        let r = pearson(&grad_cam(&ga), &grad_cam(&gb));
        assert!(r >= 0.999, "{arch}: Grad-CAM Pearson {r}");
        // Occlusion's copies through the region path.
        let x1 = x.narrow(0, 0, 1).unwrap();
        let origins = [(0, 0), (96, 160), (192, 192), (16, 112)];
        let patches = Tensor::zeros((4, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let t = std::time::Instant::now();
        let pa = a.model.forward_patched(&x1, &patches, &origins).unwrap();
        let ta = t.elapsed();
        let t = std::time::Instant::now();
        let pb = b.model.forward_patched(&x1, &patches, &origins).unwrap();
        let tb = t.elapsed();
        let perr = max_abs(&pa, &pb);
        assert!(perr <= 1e-3 * largest(&pa), "{arch}: patched logits differ by {perr}");
        println!(
            "{arch}: logits max diff {err:.2e}, saliency r {:.6}, patched logits max diff {perr:.2e} ({ta:?} built-in, {tb:?} ONNX)",
            pearson(&ga.input, &gb.input)
        );
    }
}

const IMAGENET: InputSpec = InputSpec {
    channels: 3,
    height: 224,
    width: 224,
};

fn reference_dir(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| panic!("set {var}")))
}

/// Grad-CAM at the first probed layer: ReLU(Σ_c mean(grad_c) · act_c).
fn grad_cam(g: &models::Gradients) -> Tensor {
    let (_, act, grad) = &g.layers[0];
    let w = grad.mean_keepdim(3).unwrap().mean_keepdim(2).unwrap();
    act.broadcast_mul(&w).unwrap().sum(1).unwrap().relu().unwrap()
}

fn pearson(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f64> = a
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f64> = b
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(&b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// A gallery with `arch: onnx`: the site builds with every method, the model page lists the
/// graph's layers, `gradcam`'s `layer:` takes their names, and a bad name is a config error.
#[test]
fn a_gallery_builds_an_onnx_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("models")).unwrap();
    std::fs::create_dir_all(d.join("images")).unwrap();
    std::fs::copy(data().join("residual-torchscript.onnx"), d.join("models/net.onnx")).unwrap();
    std::fs::write(d.join("classes.txt"), "a\nb\nc\nd\ne\nf\ng\n").unwrap();
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90]))
        .save(d.join("images/ramp.png"))
        .unwrap();
    let config = |layer: &str| {
        format!(
            "site:\n  title: ONNX\nmodels:\n  - id: net\n    arch: onnx\n    weights: models/net.onnx\n    classes: classes.txt\n    input: {{ size: [32, 27], channels: 3, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }}\n    methods: [{{ name: saliency }}, {{ name: guided-backprop }}, {{ name: integrated-gradients }}, {{ name: occlusion }}, {{ name: gradcam, layer: {layer} }}]\nimages:\n  - id: ramp\n    path: images/ramp.png\n    label: c\n"
        )
    };
    let cfg = common::write_config(d, &config("layer1.0"));
    common::cli::run_ok(&["build"], &cfg);
    let page = std::fs::read_to_string(d.join("public/models/net/index.html")).unwrap();
    for layer in ["layer1.0.relu_1", "layer1.1.conv2", "maxpool", "fc"] {
        assert!(page.contains(layer), "model page lacks {layer}");
    }
    let manifest = std::fs::read_to_string(d.join("public/manifest.json")).unwrap();
    assert!(manifest.contains("\"arch\": \"onnx\"") || manifest.contains("\"arch\":\"onnx\""));
    assert!(manifest.contains("gradcam"));
    let cfg = common::write_config(d, &config("layer9"));
    let err = common::cli::run_err(&["build"], &cfg);
    assert!(err.contains("layer9") && err.contains("gallery.yaml"), "{err}");
    // A graph that does not fit the configured input: the config's line and key, then the file.
    let cfg = common::write_config(d, &config("layer1.0").replace("size: [32, 27]", "size: [30, 27]"));
    let err = common::cli::run_err(&["build"], &cfg);
    assert!(
        err.contains("gallery.yaml:6: models[0].weights") && err.contains("net.onnx") && err.contains("dimension 2"),
        "{err}"
    );
    assert!(
        d.join("public/models/net/index.html").exists(),
        "the earlier site stays"
    );
}

/// `CNNSCOPE_ONNX_ZOO=DIR` (written by `tests/data/onnx/make_zoo.py DIR`): torchvision
/// classifiers that are not built in — SqueezeNet 1.1, EfficientNet-B0, DenseNet-121,
/// ShuffleNetV2 ×0.5, MNASNet 0.5 — exported to ONNX with random weights, against PyTorch:
/// logits within 1e-3 of the largest logit, saliency and Grad-CAM at the default layer
/// with Pearson ≥ 0.999. Prints the numbers docs/models.md gives.
#[test]
#[ignore = "needs CNNSCOPE_ONNX_ZOO (files made with PyTorch)"]
fn torchvision_classifiers_match_pytorch() {
    let (dir, spec) = (reference_dir("CNNSCOPE_ONNX_ZOO"), IMAGENET);
    for name in [
        "squeezenet1_1",
        "efficientnet_b0",
        "densenet121",
        "shufflenet_v2_x0_5",
        "mnasnet0_5",
    ] {
        let r = candle_core::safetensors::load(dir.join(format!("{name}.safetensors")), &Device::Cpu).unwrap();
        let path = dir.join(format!("{name}.onnx"));
        let m = load(&path, &spec, 1000);
        let arch = models::onnx::architecture(&path, &spec, 1000).unwrap();
        // PyTorch's map is taken at the module make_zoo.py names; a Grad-CAM Pearson of
        // ≥ 0.999 shows that the default layer is that module's output.
        let x = &r["x"];
        let logits = m.model.forward(x, &mut Tap::default()).unwrap();
        let err = max_abs(&logits, &r["logits"]) / largest(&r["logits"]);
        let targets: Vec<usize> = r["target"]
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .map(|&t| t as usize)
            .collect();
        let g = models::gradients(
            m.model.as_ref(),
            x,
            &targets,
            Select::Only(vec![arch.gradcam_layer.into()]),
        )
        .unwrap();
        let sal = pearson(&g.input, &r["saliency"]);
        let cam_r = pearson(&grad_cam(&g), &r["cam"]);
        println!(
            "{name}: {} layers, logits max diff {err:.1e} of the largest, saliency r {sal:.6}, Grad-CAM at `{}` r {cam_r:.6}",
            m.model.layers().len(),
            arch.gradcam_layer
        );
        assert!(err <= 1e-3, "{name}: logits differ by {err} of the largest");
        assert!(sal >= 0.999, "{name}: saliency Pearson {sal}");
        assert!(cam_r >= 0.999, "{name}: Grad-CAM Pearson {cam_r}");
    }
}

/// Occlusion's region path (each copy computed only where its patch reaches) gives the
/// logits of the full copies, for both networks and both exporters.
#[test]
fn patched_forward_equals_the_full_copies() {
    for (name, (h, w), classes) in [("residual", (32, 27), 7), ("ops", (23, 19), 5)] {
        let spec = InputSpec {
            channels: 3,
            height: h,
            width: w,
        };
        for exporter in ["dynamo", "torchscript"] {
            let m = load(&data().join(format!("{name}-{exporter}.onnx")), &spec, classes);
            let x = Tensor::randn(0f32, 1.0, (1, 3, h, w), &Device::Cpu).unwrap();
            let origins = [(0, 0), (5, 9), (h - 6, w - 6), (10, 3)];
            let patches = Tensor::zeros((origins.len(), 3, 6, 6), DType::F32, &Device::Cpu).unwrap();
            let fast = m.model.forward_patched(&x, &patches, &origins).unwrap();
            let full = m
                .model
                .forward(
                    &models::region::copies(&x, &patches, &origins).unwrap(),
                    &mut Tap::default(),
                )
                .unwrap();
            let err = max_abs(&fast, &full);
            assert!(
                err <= 1e-5 * largest(&full).max(1.0),
                "{name}-{exporter}: patched logits differ by {err}"
            );
        }
    }
}
