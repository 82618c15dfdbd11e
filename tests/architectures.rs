//! Every architecture states its tensors once: the constructor asks for exactly the tensors
//! `tensors()` lists, each layer's parameter count is the size of the tensors it owns, and
//! the layer list is what a forward pass passes through the tap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use cnnscope::models::layer::{self, Tensors};
use cnnscope::models::{self, Architecture, InputSpec, Select, Tap, ARCHITECTURES};

/// A weights source that hands out zeros and records every tensor asked for.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Tensors>>);

impl SimpleBackend for Recorder {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.lock().unwrap().push((name.to_string(), s.dims().to_vec()));
        Tensor::zeros(s, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        panic!("`{name}` asked for without a shape")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// About the smallest input each architecture takes, so that the forward passes are quick;
/// not square, so that a height/width mix-up shows.
fn small_input(arch: &Architecture) -> InputSpec {
    let (height, width, channels) = match arch.id {
        "lenet5" => (28, 28, 1),
        "alexnet" => (63, 66, 3),
        _ => (32, 35, 3),
    };
    let input = InputSpec {
        height,
        width,
        channels,
    };
    (arch.check_input)(&input).unwrap_or_else(|e| panic!("{}: {e}", arch.id));
    input
}

/// Parameters at 1000 classes (LeNet-5: 10), as docs/models.md and the README give them.
fn documented_total(id: &str) -> (usize, usize) {
    match id {
        "lenet5" => (10, 61_706),
        "efficientnet-lite0" => (1000, 4_652_008),
        "resnet18" => (1000, 11_689_512),
        "resnet34" => (1000, 21_797_672),
        "resnet50" => (1000, 25_557_032),
        "vgg11" => (1000, 132_863_336),
        "vgg11_bn" => (1000, 132_868_840),
        "vgg16" => (1000, 138_357_544),
        "vgg16_bn" => (1000, 138_365_992),
        "alexnet" => (1000, 61_100_840),
        "mobilenet_v2" => (1000, 3_504_872),
        other => panic!("no documented total for {other}: add it here and to docs/models.md"),
    }
}

fn build(arch: &Architecture, input: &InputSpec, classes: usize) -> (Box<dyn models::Model>, Tensors) {
    let rec = Recorder::default();
    let vb = VarBuilder::from_backend(Box::new(rec.clone()), DType::F32, Device::Cpu);
    let model = (arch.build)(vb, input, classes).unwrap_or_else(|e| panic!("{}: {e}", arch.id));
    let asked = rec.0.lock().unwrap().clone();
    (model, asked)
}

#[test]
fn constructors_load_exactly_the_listed_tensors() {
    for arch in ARCHITECTURES {
        let input = small_input(arch);
        let (classes, _) = documented_total(arch.id);
        let listed = (arch.tensors)(&input, classes);
        let (_, asked) = build(arch, &input, classes);
        let mut once = BTreeMap::new();
        for (name, shape) in &listed {
            assert!(
                once.insert(name.clone(), shape.clone()).is_none(),
                "{}: `{name}` listed twice",
                arch.id
            );
        }
        let mut seen = BTreeMap::new();
        for (name, shape) in &asked {
            assert!(
                seen.insert(name.clone(), shape.clone()).is_none(),
                "{}: `{name}` loaded twice",
                arch.id
            );
        }
        for (name, shape) in &seen {
            assert_eq!(once.get(name), Some(shape), "{}: loads `{name}` {shape:?}", arch.id);
        }
        for (name, shape) in &once {
            assert_eq!(seen.get(name), Some(shape), "{}: lists `{name}` {shape:?}", arch.id);
        }
    }
}

#[test]
fn parameters_are_the_sizes_of_each_layers_tensors() {
    for arch in ARCHITECTURES {
        // The real input size where there is one: parameters do not depend on it.
        let (classes, total) = documented_total(arch.id);
        let input = match arch.id {
            "lenet5" => small_input(arch),
            _ => InputSpec {
                height: 224,
                width: 224,
                channels: 3,
            },
        };
        let listed: BTreeMap<String, Vec<usize>> = (arch.tensors)(&input, classes).into_iter().collect();
        let (model, _) = build(arch, &input, classes);
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for l in model.layers() {
            let mine: Tensors = l
                .tensors
                .iter()
                .map(|n| {
                    let shape = listed
                        .get(n)
                        .unwrap_or_else(|| panic!("{}: {} owns unlisted `{n}`", arch.id, l.name));
                    (n.clone(), shape.clone())
                })
                .collect();
            let size: usize = mine
                .iter()
                .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(l.parameters, size, "{}: {}", arch.id, l.name);
            assert_eq!(layer::parameters(&mine), size, "{}: {}", arch.id, l.name);
            for n in &l.tensors {
                if let Some(other) = owner.insert(n, &l.name) {
                    panic!("{}: `{n}` owned by {other} and {}", arch.id, l.name);
                }
            }
            if let Some(w) = &l.weight {
                assert!(
                    l.tensors.contains(w),
                    "{}: {}'s weight `{w}` is not its own",
                    arch.id,
                    l.name
                );
            }
        }
        for name in listed.keys() {
            assert!(owner.contains_key(name.as_str()), "{}: no layer owns `{name}`", arch.id);
        }
        let sum: usize = model.layers().iter().map(|l| l.parameters).sum();
        assert_eq!(sum, total, "{}", arch.id);
        assert_eq!(model.num_classes(), classes);
    }
}

#[test]
fn forward_passes_the_listed_layers_with_their_shapes() {
    for arch in ARCHITECTURES {
        let input = small_input(arch);
        let classes = 5;
        let (model, _) = build(arch, &input, classes);
        let x = Tensor::zeros((1, input.channels, input.height, input.width), DType::F32, &Device::Cpu).unwrap();
        let mut tap = Tap::new(Select::All, Select::None);
        let logits = model.forward(&x, &mut tap).unwrap();
        assert_eq!(logits.dims(), &[1, classes], "{}", arch.id);
        let got: Vec<(&str, Vec<usize>)> = tap
            .activations
            .iter()
            .map(|(n, a)| (n.as_str(), a.dims().to_vec()))
            .collect();
        let want: Vec<(&str, Vec<usize>)> = model
            .layers()
            .iter()
            .map(|l| (l.name.as_str(), [&[1][..], &l.output_shape].concat()))
            .collect();
        assert_eq!(got, want, "{}", arch.id);
    }
}

/// What the network overview draws: stages and skip connections as each architecture
/// states them, against the published structures.
#[test]
fn stages_and_skip_connections() {
    let summary = |id: &str| {
        let arch = models::architecture(id).unwrap();
        let (m, _) = build(arch, &small_input(arch), 10);
        let layers = m.layers().to_vec();
        let mut groups: Vec<String> = Vec::new();
        for g in layers.iter().filter_map(|l| l.group.clone()) {
            if groups.last() != Some(&g) {
                groups.push(g);
            }
        }
        let residual: Vec<String> = layers.iter().filter(|l| l.residual).map(|l| l.name.clone()).collect();
        (groups, residual)
    };
    // EfficientNet-Lite0: 7 stages of 1, 2, 2, 3, 3, 4, 1 blocks; a block keeps its input
    // when its stride is 1 and its width unchanged: every block but the first of a stage.
    let (g, r) = summary("efficientnet-lite0");
    assert_eq!(g, (1..=7).map(|s| format!("stage {s}")).collect::<Vec<_>>());
    let want: Vec<String> = [2, 4, 6, 7, 9, 10, 12, 13, 14]
        .iter()
        .map(|i| format!("_blocks.{i}"))
        .collect();
    assert_eq!(r, want);
    // MobileNetV2: 17 inverted residual blocks in 7 stages, 10 with the identity skip.
    let (g, r) = summary("mobilenet_v2");
    assert_eq!(g.len(), 7);
    assert_eq!(r.len(), 10, "{r:?}");
    // ResNets: every stage is residual blocks; LeNet-5, VGG and AlexNet have no skips.
    for id in ["resnet18", "resnet50"] {
        assert_eq!(summary(id).1, ["layer1", "layer2", "layer3", "layer4"]);
    }
    for id in ["lenet5", "vgg11", "alexnet"] {
        assert_eq!(summary(id), (vec![], vec![]), "{id}");
    }
}
