//! The LeNet-5 architecture, the model interface (activations and gradients by layer
//! name), and training.

mod common;

use candle_core::{DType, Device, Tensor, D};
use cnnscope::models::{self, InputSpec, Select, Tap};

const MNIST: InputSpec = InputSpec {
    height: 28,
    width: 28,
    channels: 1,
};

fn lenet(dtype: DType) -> models::LoadedModel {
    let arch = models::architecture("lenet5").unwrap();
    models::load_as(
        arch,
        &common::repo().join("models/lenet5-mnist.safetensors"),
        &MNIST,
        10,
        dtype,
    )
    .unwrap()
}

/// The first `n` held-out digits, normalised, as an `(n, 1, 28, 28)` batch, and their labels.
fn digits(n: usize, dtype: DType) -> (Tensor, Vec<u8>) {
    let d = cnnscope::data::idx::read_digits(&common::repo().join("data/mnist")).unwrap();
    let start = d.len() - 2000;
    let x: Vec<f32> = (start..start + n)
        .flat_map(|i| {
            d.image(i)
                .iter()
                .map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081)
                .collect::<Vec<_>>()
        })
        .collect();
    let t = Tensor::from_vec(x, (n, 1, 28, 28), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    (t, d.labels[start..start + n].to_vec())
}

#[test]
fn lenet_parameter_counts_and_shapes() {
    let m = lenet(DType::F32);
    let layers = m.model.layers();
    let total: usize = layers.iter().map(|l| l.parameters).sum();
    assert_eq!(total, 61_706);
    let stored: usize = m.tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(stored, 61_706, "the table counts what the weights hold");
    let by_name = |n: &str| layers.iter().find(|l| l.name == n).unwrap();
    assert_eq!(by_name("conv1").parameters, 156);
    assert_eq!(by_name("conv2").parameters, 2_416);
    assert_eq!(by_name("fc1").parameters, 48_120);
    assert_eq!(by_name("fc2").parameters, 10_164);
    assert_eq!(by_name("fc3").parameters, 850);
    // The declared output shapes are the ones the forward pass produces.
    let (x, _) = digits(3, DType::F32);
    let mut tap = Tap::new(Select::All, Select::None);
    m.model.forward(&x, &mut tap).unwrap();
    assert_eq!(tap.activations.len(), layers.len());
    for (l, (name, a)) in layers.iter().zip(&tap.activations) {
        assert_eq!(&l.name, name);
        assert_eq!(a.dims()[0], 3);
        assert_eq!(&a.dims()[1..], l.output_shape.as_slice(), "{name}");
    }
}

#[test]
fn trained_weights_reach_97_percent_on_held_out_digits() {
    let m = lenet(DType::F32);
    let (x, y) = digits(2000, DType::F32);
    let pred = m
        .model
        .forward(&x, &mut Tap::default())
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let correct = pred.iter().zip(&y).filter(|(p, l)| **p == **l as u32).count();
    assert!(correct as f64 / 2000.0 >= 0.97, "{correct}/2000");
}

#[test]
fn input_gradient_matches_finite_differences() {
    // In f64, so the central difference is accurate. The digit's flat black background
    // makes exact ties inside max-pool windows, where the max has no derivative (a central
    // difference there sees half of either side); a little noise breaks the ties.
    let m = lenet(DType::F64);
    let (x, _) = digits(1, DType::F64);
    let x = (x + Tensor::randn(0f64, 0.01, (1, 1, 28, 28), &Device::Cpu).unwrap()).unwrap();
    let target = 5;
    let g = models::gradients(m.model.as_ref(), &x, &[target], Select::None).unwrap();
    let grad = g.input.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let xv = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let score = |v: &[f64]| {
        let t = Tensor::from_vec(v.to_vec(), x.shape(), &Device::Cpu).unwrap();
        let l = m.model.forward(&t, &mut Tap::default()).unwrap();
        l.get(0).unwrap().get(target).unwrap().to_scalar::<f64>().unwrap()
    };
    let eps = 1e-5;
    // 24 random pixels (seeded), digit strokes and background alike.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut checked = 0;
    for _ in 0..24 {
        let i = rng.gen_range(0..784);
        let (mut a, mut b) = (xv.clone(), xv.clone());
        a[i] += eps;
        b[i] -= eps;
        let fd = (score(&a) - score(&b)) / (2.0 * eps);
        let scale = fd.abs().max(grad[i].abs()).max(1e-6);
        assert!(
            (fd - grad[i]).abs() / scale <= 1e-2 || (fd - grad[i]).abs() < 1e-8,
            "pixel {i}: {} vs {fd}",
            grad[i]
        );
        checked += 1;
    }
    assert!(checked >= 20);
}

#[test]
fn layer_gradients_through_probes() {
    let m = lenet(DType::F64);
    let (x, _) = digits(2, DType::F64);
    let targets = [3, 8];
    let g = models::gradients(m.model.as_ref(), &x, &targets, Select::All).unwrap();
    assert_eq!(g.layers.len(), 11);
    let grad = |n: &str| g.layers.iter().find(|(l, _, _)| l == n).unwrap().2.clone();
    // d logit_t / d logits is the one-hot of t, per sample.
    let g3 = grad("fc3").to_vec2::<f64>().unwrap();
    for (s, t) in targets.iter().enumerate() {
        for c in 0..10 {
            assert_eq!(g3[s][c], if c == *t { 1.0 } else { 0.0 });
        }
    }
    // d logit_t / d relu4 is row t of fc3's weight.
    let w = m.tensors["fc3.weight"]
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let g4 = grad("relu4").to_vec2::<f64>().unwrap();
    for (s, t) in targets.iter().enumerate() {
        for k in 0..84 {
            assert!((g4[s][k] - w[*t][k]).abs() < 1e-12);
        }
    }
    // Shapes follow the activations, and the gradient at conv1 is nonzero.
    let (_, a, gc) = &g.layers[0];
    assert_eq!(a.dims(), gc.dims());
    assert!(gc.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap() > 0.0);
}

#[test]
fn training_smoke_test() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts =
        cnnscope::train::TrainOptions::new(common::repo().join("data/mnist"), dir.path().join("w.safetensors"));
    opts.train_size = 600;
    opts.test_size = 300;
    opts.epochs = 3;
    opts.batch_size = 32;
    let mut seen = Vec::new();
    let log = cnnscope::train::train_lenet5(&opts, |e| seen.push(e.epoch)).unwrap();
    assert_eq!(seen, vec![1, 2, 3]);
    assert!(log.epochs[2].train_loss < log.epochs[0].train_loss, "loss goes down");
    assert!(
        log.test_accuracy > 0.6,
        "well above chance after 3 short epochs: {}",
        log.test_accuracy
    );
    let total: usize = log.confusion.iter().flatten().sum();
    assert_eq!(total, 300);
    // The weights load through the architecture check, and the log reads back.
    let arch = models::architecture("lenet5").unwrap();
    models::load(arch, &dir.path().join("w.safetensors"), &MNIST, 10).unwrap();
    let back = cnnscope::train::read_log(&dir.path().join("w.json")).unwrap();
    assert_eq!(back.epochs.len(), 3);
    // Same seed, same weights.
    let mut again = opts.clone();
    again.out = dir.path().join("w2.safetensors");
    cnnscope::train::train_lenet5(&again, |_| {}).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("w.safetensors")).unwrap(),
        std::fs::read(dir.path().join("w2.safetensors")).unwrap()
    );
}
