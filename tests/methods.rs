//! Correctness of the attribution methods on the trained LeNet-5.

mod common;

use candle_core::{DType, Device, Tensor};
use cnnscope::config::Input;
use cnnscope::methods::{
    self, activation_gradients, gradcam, gradcam_pp, gradient_x_input, hirescam, integrated_gradients, layercam,
    occlusion, saliency, smoothgrad, weight_gradients, Baseline, Ctx, Method, MethodSpec, Output,
};
use cnnscope::models::{self, InputSpec, LoadedModel, Select, Tap};

fn input() -> Input {
    Input {
        height: 28,
        width: 28,
        channels: 1,
        mean: vec![0.1307],
        std: vec![0.3081],
    }
}

fn lenet() -> (LoadedModel, &'static models::Architecture) {
    let arch = models::architecture("lenet5").unwrap();
    let spec = InputSpec {
        height: 28,
        width: 28,
        channels: 1,
    };
    let m = models::load(arch, &common::repo().join("models/lenet5-mnist.safetensors"), &spec, 10).unwrap();
    (m, arch)
}

/// A held-out digit of the default gallery, normalised, `(1, 1, 28, 28)`.
fn digit(name: &str) -> Tensor {
    let img = image::open(common::repo().join(format!("content/images/{name}.png"))).unwrap();
    cnnscope::data::image::prepare(&img, &input()).unwrap().1
}

fn map(out: Output) -> methods::Map {
    match out {
        Output::Map(m) => m,
        _ => panic!("expected a map"),
    }
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

#[test]
fn integrated_gradients_completeness_within_one_percent() {
    let (m, arch) = lenet();
    let inp = input();
    for name in ["three", "seven"] {
        let x = digit(name);
        for baseline in [Baseline::Zeros, Baseline::Black, Baseline::Blur] {
            let cx = Ctx::new(&m, arch, &inp, &x, if name == "three" { 3 } else { 7 }, 0);
            let spec = integrated_gradients::IntegratedGradients { steps: 64, baseline };
            let out = map(spec.run(&cx).unwrap());
            let gap = out.metrics["completeness_gap"];
            assert!(gap.abs() <= 0.01, "{name} {baseline:?}: gap {gap}");
            // The reported sum is the sum of the exported map.
            let sum: f64 = vec(&out.data).iter().map(|&v| v as f64).sum();
            assert!((sum - out.metrics["sum_of_attributions"]).abs() < 1e-3);
            assert_eq!(out.data.dims(), &[1, 28, 28]);
        }
    }
}

#[test]
fn gradcam_equals_a_direct_computation() {
    let (m, arch) = lenet();
    let inp = input();
    let x = digit("four");
    let target = 4;
    // Direct: activation and gradient at relu2 from one pass, then loops.
    let g = models::gradients(m.model.as_ref(), &x, &[target], Select::Only(vec!["relu2".into()])).unwrap();
    let (_, a, d) = &g.layers[0];
    let (k, h, w) = (16, 10, 10);
    let (av, dv) = (vec(a), vec(d));
    let mut expected = vec![0f32; h * w];
    for c in 0..k {
        let wk: f32 = dv[c * h * w..(c + 1) * h * w].iter().sum::<f32>() / (h * w) as f32;
        for i in 0..h * w {
            expected[i] += wk * av[c * h * w + i];
        }
    }
    let expected: Vec<f32> = expected.into_iter().map(|v| v.max(0.0)).collect();
    let cx = Ctx::new(&m, arch, &inp, &x, target, target);
    let got = map(gradcam::GradCam::at(None).run(&cx).unwrap());
    assert_eq!(got.layer.as_deref(), Some("relu2"), "the lenet5 preset");
    assert_eq!(got.data.dims(), &[10, 10]);
    let gv = vec(&got.data);
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0);
    for (e, g) in expected.iter().zip(&gv) {
        assert!((e - g).abs() <= 1e-5 * scale, "{e} vs {g}");
    }
    // Grad-CAM++ against its closed form, written out for one channel.
    let wpp = vec(&gradcam_pp::weights(&a.squeeze(0).unwrap(), &d.squeeze(0).unwrap()).unwrap());
    let c = 5;
    let s = &dv[c * h * w..(c + 1) * h * w];
    let sum_a: f64 = av[c * h * w..(c + 1) * h * w].iter().map(|&v| v as f64).sum();
    let mut wc = 0f64;
    for &gi in s {
        let gi = gi as f64;
        if gi != 0.0 {
            wc += gi * gi / (2.0 * gi * gi + sum_a * gi.powi(3) + 1e-6) * gi.max(0.0);
        }
    }
    assert!((wc as f32 - wpp[c]).abs() <= 1e-5 * wc.abs().max(1e-6) as f32);
    let direct = gradcam::weighted_map(
        &a.squeeze(0).unwrap(),
        &Tensor::new(wpp.as_slice(), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let pp = map(gradcam_pp::GradCamPlusPlus::at(None).run(&cx).unwrap());
    assert_eq!(vec(&direct), vec(&pp.data));
}

#[test]
fn hirescam_and_layercam_equal_a_direct_computation() {
    let (m, arch) = lenet();
    let inp = input();
    for (name, target, layer) in [("four", 4, "relu2"), ("nine", 7, "relu1"), ("two", 2, "pool2")] {
        let x = digit(name);
        // Direct: activation and gradient at the layer from one pass, then loops.
        let g = models::gradients(m.model.as_ref(), &x, &[target], Select::Only(vec![layer.into()])).unwrap();
        let (_, a, d) = &g.layers[0];
        let (k, h, w) = a.squeeze(0).unwrap().dims3().unwrap();
        let (av, dv) = (vec(a), vec(d));
        let mut hires = vec![0f32; h * w];
        let mut layer_cam = vec![0f32; h * w];
        for c in 0..k {
            for i in 0..h * w {
                let (ai, gi) = (av[c * h * w + i], dv[c * h * w + i]);
                hires[i] += gi * ai;
                layer_cam[i] += gi.max(0.0) * ai;
            }
        }
        let cx = Ctx::new(&m, arch, &inp, &x, target, target);
        let layer = Some(layer.to_string());
        for (method, expected) in [
            (MethodSpec::from(hirescam::HiResCam::at(layer.as_deref())), hires),
            (layercam::LayerCam::at(layer.as_deref()).into(), layer_cam),
        ] {
            let got = map(method.run(&cx).unwrap());
            assert_eq!(got.layer, layer);
            assert_eq!(got.data.dims(), &[h, w]);
            let expected: Vec<f32> = expected.into_iter().map(|v| v.max(0.0)).collect();
            let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{name} {}: all zero", method.name());
            for (e, g) in expected.iter().zip(vec(&got.data)) {
                assert!((e - g).abs() <= 1e-5 * scale, "{name} {}: {e} vs {g}", method.name());
            }
        }
        // HiResCAM keeps where in a map the gradient is: it differs from Grad-CAM unless
        // every map's gradient is constant, which LeNet's are not.
        let hi = vec(&map(hirescam::HiResCam::at(layer.as_deref()).run(&cx).unwrap()).data);
        let gc = vec(&map(gradcam::GradCam::at(layer.as_deref()).run(&cx).unwrap()).data);
        assert!(hi
            .iter()
            .zip(&gc)
            .any(|(a, b)| (a - b * (h * w) as f32).abs() > 1e-4 * a.abs().max(1.0)));
    }
}

#[test]
fn guided_backprop_passes_no_negative_gradient_through_a_relu() {
    let (m, _) = lenet();
    // The probes sit on the ReLUs' inputs: what a ReLU passes back lands there.
    let pre_relu = Select::Only(vec!["conv1".into(), "conv2".into(), "fc1".into(), "fc2".into()]);
    for (name, target) in [("two", 2), ("two", 8), ("nine", 4)] {
        let x = digit(name);
        let g = models::guided_gradients(m.model.as_ref(), &x, &[target], pre_relu.clone()).unwrap();
        assert_eq!(g.layers.len(), 4);
        for (layer, _, d) in &g.layers {
            let min = vec(d).into_iter().fold(f32::INFINITY, f32::min);
            assert!(min >= 0.0, "{layer}: guided gradient {min}");
        }
        // The plain gradient does pass negative values there: the test can fail.
        let plain = models::gradients(m.model.as_ref(), &x, &[target], pre_relu.clone()).unwrap();
        assert!(plain.layers.iter().any(|(_, _, d)| vec(d).iter().any(|&v| v < 0.0)));
    }
}

#[test]
fn occlusion_with_one_pixel_windows_is_the_single_pixel_drop() {
    let (m, arch) = lenet();
    let inp = input();
    let x = digit("six");
    let target = 6;
    let cx = Ctx::new(&m, arch, &inp, &x, target, target);
    let spec = occlusion::Occlusion {
        window: Some(1),
        stride: Some(1),
        baseline: -0.5,
    };
    let got = vec(&map(spec.run(&cx).unwrap()).data);
    let xv = vec(&x);
    let score = |v: Vec<f32>| {
        let t = Tensor::from_vec(v, (1, 1, 28, 28), &Device::Cpu).unwrap();
        let l = m.model.forward(&t, &mut Tap::default()).unwrap();
        l.get(0).unwrap().get(target).unwrap().to_scalar::<f32>().unwrap()
    };
    let base = score(xv.clone());
    for i in (0..784).step_by(7) {
        let mut v = xv.clone();
        v[i] = -0.5;
        let drop = base - score(v);
        assert!(
            (drop - got[i]).abs() <= 1e-4 * base.abs().max(1.0),
            "pixel {i}: {drop} vs {}",
            got[i]
        );
    }
}

#[test]
fn one_shared_pass_serves_seven_methods() {
    let (m, arch) = lenet();
    let inp = input();
    let x = digit("eight");
    let cx = Ctx::new(&m, arch, &inp, &x, 8, 8);
    let before = methods::passes_on_this_thread();
    for spec in [
        MethodSpec::from(saliency::Saliency {}),
        gradient_x_input::GradientXInput {}.into(),
        gradcam::GradCam::at(None).into(),
        gradcam_pp::GradCamPlusPlus::at(Some("relu1")).into(),
        hirescam::HiResCam::at(None).into(),
        layercam::LayerCam::at(Some("relu1")).into(),
        activation_gradients::ActivationGradients {}.into(),
    ] {
        spec.run(&cx).unwrap();
    }
    assert_eq!(methods::passes_on_this_thread() - before, 1);
    assert!(cx.shared_ran());
    // Saliency is the input gradient; gradient × input is it times the input.
    let s = vec(&map(saliency::Saliency {}.run(&cx).unwrap()).data);
    let gx = vec(&map(gradient_x_input::GradientXInput {}.run(&cx).unwrap()).data);
    for ((s, g), xi) in s.iter().zip(&gx).zip(vec(&x)) {
        assert!((s * xi - g).abs() < 1e-6);
    }
}

#[test]
fn smoothgrad_without_noise_is_saliency() {
    let (m, arch) = lenet();
    let inp = input();
    let x = digit("five");
    let cx = Ctx::new(&m, arch, &inp, &x, 5, 5);
    let s = vec(&map(saliency::Saliency {}.run(&cx).unwrap()).data);
    let sg = smoothgrad::SmoothGrad {
        samples: 40, // more than one batch
        noise: 0.0,
        seed: 0,
    };
    let g = vec(&map(sg.run(&cx).unwrap()).data);
    for (a, b) in s.iter().zip(&g) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-3), "{a} vs {b}");
    }
    // With noise, seeded: the same seed gives the same map, another seed another.
    let run = |seed| {
        vec(&map(smoothgrad::SmoothGrad {
            samples: 8,
            noise: 0.15,
            seed,
        }
        .run(&cx)
        .unwrap())
        .data)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn weight_gradients_match_a_finite_difference() {
    let (m, arch) = lenet();
    let inp = input();
    let x = digit("zero");
    let cx = Ctx::new(&m, arch, &inp, &x, 0, 0);
    let Output::Weights { class, grads } = weight_gradients::WeightGradients {}.run(&cx).unwrap() else {
        panic!()
    };
    assert_eq!(class, 0);
    let names: Vec<&str> = grads.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
    );
    // d loss / d fc3.bias-free check: for fc3.weight[c][k], dL/dW = (p_c − y_c) · relu4_k.
    let mut tap = Tap::new(Select::Only(vec!["relu4".into()]), Select::None);
    let logits = m.model.forward(&x, &mut tap).unwrap();
    let p = vec(&candle_nn::ops::softmax(&logits, 1).unwrap());
    let h = vec(&tap.activations[0].1);
    let g3 = grads[4].1.to_vec2::<f32>().unwrap();
    for c in 0..10 {
        for k in (0..84).step_by(5) {
            let expected = (p[c] - if c == 0 { 1.0 } else { 0.0 }) * h[k];
            assert!(
                (g3[c][k] - expected).abs() < 1e-5,
                "[{c}][{k}] {} vs {expected}",
                g3[c][k]
            );
        }
    }
}
