//! MobileNetV2 (Sandler et al. 2018) as torchvision builds it (width 1.0): a 3×3/2
//! convolution to 32 channels, 17 inverted residual blocks, a 1×1 convolution to 1280
//! channels, global average pooling, dropout and a linear classifier. Convolutions have no
//! bias and are followed by batch norm (ε = 1e-5); activations are ReLU6.
//!
//! An inverted residual block with expansion `t` is: 1×1 expansion to `t·in` channels with
//! batch norm and ReLU6 (absent when `t = 1`), 3×3 depthwise convolution with batch norm
//! and ReLU6 (carrying the stride), 1×1 projection with batch norm and no activation; the
//! input is added back when the stride is 1 and the widths agree.
//!
//! Named layers are the torchvision module paths, each the module's output as a PyTorch
//! forward hook sees it: `features.0` (convolution, batch norm, ReLU6), `features.1` …
//! `features.17` (each block's output, after its skip connection), `features.18`
//! (convolution, batch norm, ReLU6: 1280 maps), `avgpool` (1280 values; torchvision pools
//! functionally, the name is ours), `classifier.1` (the logits).

use std::sync::Arc;

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use super::layer::{linear_tensors, Net, Tensors};
use super::nn::{global_avg_pool, linear, BatchNorm, Conv, ConvConfig, Linear, Pad};
use super::region::{self, Region};
use super::{Architecture, InputSpec, LayerInfo, LayerKind, Model, Tap};
use crate::ops::bias::Act;
use crate::ops::mbconv::MbConv;

pub const ARCH: Architecture = Architecture {
    id: "mobilenet_v2",
    summary: "MobileNetV2 (torchvision naming, 17 inverted residual blocks, ReLU6), 3.5M parameters",
    gradcam_layer: "features.18",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors,
    build,
    graph: None,
};

const EPS: f64 = 1e-5;
const STEM: usize = 32;
const LAST: usize = 1280;

/// torchvision's `inverted_residual_setting`: expansion t, width c, repeats n, stride s.
const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

fn check_input(input: &InputSpec) -> Result<(), String> {
    if input.channels != 3 {
        return Err(format!(
            "mobilenet_v2 takes 3-channel (RGB) input, not {} channel(s)",
            input.channels
        ));
    }
    if input.height < 32 || input.width < 32 {
        return Err(format!(
            "mobilenet_v2 needs an input of at least 32×32 (it reduces the size 32 times), not {}×{}",
            input.height, input.width
        ));
    }
    Ok(())
}

/// A convolution without bias followed by batch norm and, optionally, ReLU6.
struct Unit {
    conv: String,
    bn: String,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    relu6: bool,
}

impl Unit {
    /// No bias (batch norm follows), "same" padding for odd kernels.
    fn config(&self) -> ConvConfig {
        ConvConfig {
            stride: self.stride,
            pad: Pad::Sym((self.k - 1) / 2),
            groups: self.groups,
            bias: false,
        }
    }
    fn tensors(&self) -> Tensors {
        let mut v = Conv::tensors(&self.conv, self.cin, self.cout, self.k, self.config());
        v.extend(BatchNorm::tensors(&self.bn, self.cout));
        v
    }
    /// The convolution with its batch norm folded in (it is not a named layer).
    fn load(&self, vb: &VarBuilder) -> candle_core::Result<Conv> {
        let conv = Conv::new(self.cin, self.cout, self.k, self.config(), vb.pp(&self.conv))?;
        conv.fold(&BatchNorm::new(self.cout, EPS, vb.pp(&self.bn))?)
    }
}

/// `ConvNormActivation` at `prefix`: `prefix.0` conv, `prefix.1` batch norm, ReLU6.
fn cna(prefix: &str, cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Unit {
    Unit {
        conv: format!("{prefix}.0"),
        bn: format!("{prefix}.1"),
        cin,
        cout,
        k,
        stride,
        groups,
        relu6: true,
    }
}

/// One entry of `features`: its units, its stride, and whether its input is added back.
struct FeatureSpec {
    units: Vec<Unit>,
    stride: usize,
    residual: bool,
}

/// The 19 entries of `features`, with torchvision's module names.
fn features() -> Vec<FeatureSpec> {
    let mut out = vec![FeatureSpec {
        units: vec![cna("features.0", 3, STEM, 3, 2, 1)],
        stride: 2,
        residual: false,
    }];
    let mut cin = STEM;
    for (t, c, n, s) in SETTING {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{}.conv", out.len());
            let hidden = cin * t;
            let mut units = Vec::new();
            if t != 1 {
                units.push(cna(&format!("{p}.0"), cin, hidden, 1, 1, 1));
            }
            let j = units.len();
            units.push(cna(&format!("{p}.{j}"), hidden, hidden, 3, stride, hidden));
            units.push(Unit {
                conv: format!("{p}.{}", j + 1),
                bn: format!("{p}.{}", j + 2),
                cin: hidden,
                cout: c,
                k: 1,
                stride: 1,
                groups: 1,
                relu6: false,
            });
            out.push(FeatureSpec {
                units,
                stride,
                residual: stride == 1 && cin == c,
            });
            cin = c;
        }
    }
    let last = format!("features.{}", out.len());
    out.push(FeatureSpec {
        units: vec![cna(&last, cin, LAST, 1, 1, 1)],
        stride: 1,
        residual: false,
    });
    out
}

fn tensors(input: &InputSpec, classes: usize) -> Tensors {
    net(input, classes).tensors
}

/// The named layers, each with the tensors it owns (a feature owns its units').
fn net(input: &InputSpec, classes: usize) -> Net {
    let (mut h, mut w) = (input.height, input.width);
    let mut net = Net::default();
    // The stage of each inverted residual block: one per entry of SETTING.
    let stage_of: Vec<usize> = SETTING
        .iter()
        .enumerate()
        .flat_map(|(k, st)| std::iter::repeat_n(k + 1, st.2))
        .collect();
    let all = features();
    for (i, f) in all.iter().enumerate() {
        if f.stride == 2 {
            // 3×3, padding 1, stride 2.
            (h, w) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        }
        let c = f.units.last().map_or(0, |u| u.cout);
        let mut info = LayerInfo::new(format!("features.{i}"), LayerKind::Block, vec![c, h, w]).residual(f.residual);
        if (1..all.len() - 1).contains(&i) {
            info = info.group(format!("stage {}", stage_of[i - 1]));
        }
        net.owning(info, f.units.iter().flat_map(Unit::tensors).collect());
    }
    net.layer(LayerInfo::new("avgpool", LayerKind::AvgPool, vec![LAST]));
    net.owning(
        LayerInfo::new("classifier.1", LayerKind::Linear, vec![classes]),
        linear_tensors("classifier.1", LAST, classes),
    );
    net
}

fn build(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(MobileNetV2::new(vb, input, classes)?))
}

/// One of `features`: its convolutions (batch norms folded in; they are not named layers)
/// with whether ReLU6 follows, and for inverted residual blocks the block as one op.
struct Feature {
    name: String,
    units: Vec<(Conv, bool)>,
    residual: bool,
    fused: Option<Arc<MbConv>>,
}

impl Feature {
    fn new(name: String, units: Vec<(Conv, bool)>, residual: bool) -> candle_core::Result<Self> {
        fn parts(c: &Conv) -> candle_core::Result<(&Tensor, &Tensor)> {
            Ok((
                c.weight(),
                c.bias()
                    .ok_or_else(|| candle_core::Error::Msg("folded conv without bias".into()))?,
            ))
        }
        // [expansion,] depthwise, projection: the MBConv shape.
        let fused = match units.as_slice() {
            [.., (dw, true), (project, false)] if dw.weight().dim(1)? == 1 && dw.weight().dtype() == DType::F32 => {
                let expand = if units.len() == 3 {
                    Some(parts(&units[0].0)?)
                } else {
                    None
                };
                Some(Arc::new(MbConv::new(
                    expand,
                    parts(dw)?,
                    parts(project)?,
                    dw.stride(),
                    residual,
                )?))
            }
            _ => None,
        };
        Ok(Feature {
            name,
            units,
            residual,
            fused,
        })
    }

    fn forward(&self, x: &Tensor, tap: &Tap) -> candle_core::Result<Tensor> {
        let tracked = self
            .units
            .iter()
            .any(|(c, _)| c.weight().track_op() || c.bias().is_some_and(|b| b.track_op()));
        if let Some(fused) = self
            .fused
            .as_ref()
            .filter(|_| !tap.guided && region::supported(x) && !tracked)
        {
            let (_, _, h, w) = x.dims4()?;
            let dw = &self.units[self.units.len() - 2].0;
            return fused.forward(x, dw.padding(h, w));
        }
        let mut y = x.clone();
        for (conv, relu6) in &self.units {
            y = if *relu6 {
                conv.forward_relu6(&y, tap)?
            } else {
                conv.forward(&y)?
            };
        }
        if self.residual {
            x + y
        } else {
            Ok(y)
        }
    }

    /// [`Feature::forward`] on copies that differ only inside boxes (`Region`).
    fn forward_region(&self, x: &Region) -> candle_core::Result<Region> {
        let mut r: Option<Region> = None;
        for (conv, relu6) in &self.units {
            let act = if *relu6 { Act::Relu6 } else { Act::Identity };
            let input = r.as_ref().unwrap_or(x);
            r = Some(if conv.kernel() == 1 && conv.stride() == 1 {
                // Pixel by pixel: the boxes stay as they are.
                input.map(|t| conv.forward_padded(t, [0; 4], act))?
            } else {
                input.conv(conv, act)?
            });
        }
        let r = r.ok_or_else(|| candle_core::Error::Msg("a feature without convolutions".into()))?;
        if self.residual {
            r.add(x)
        } else {
            Ok(r)
        }
    }
}

pub struct MobileNetV2 {
    features: Vec<Feature>,
    classifier: Linear,
    layers: Vec<LayerInfo>,
    classes: usize,
}

impl MobileNetV2 {
    pub fn new(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Self> {
        let features = features()
            .into_iter()
            .enumerate()
            .map(|(i, f)| {
                let units = f
                    .units
                    .iter()
                    .map(|u| Ok((u.load(&vb)?, u.relu6)))
                    .collect::<candle_core::Result<_>>()?;
                Feature::new(format!("features.{i}"), units, f.residual)
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(MobileNetV2 {
            features,
            classifier: linear(LAST, classes, vb.pp("classifier.1"))?,
            layers: net(input, classes).layers,
            classes,
        })
    }
}

impl Model for MobileNetV2 {
    fn arch(&self) -> &'static str {
        ARCH.id
    }
    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, x: &Tensor, tap: &mut Tap) -> candle_core::Result<Tensor> {
        self.forward_from(x.clone(), 0, tap)
    }

    /// Occlusion's copies: the first features compute each copy only over the part of the
    /// map its patch reaches, until that is the whole map; the rest runs on full maps.
    fn forward_patched(&self, x: &Tensor, patches: &Tensor, origins: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        if !region::supported(x) {
            return self.forward(&region::copies(x, patches, origins)?, &mut Tap::default());
        }
        let (x, next) = Region::new(x, patches, origins)?.advance(&self.features, Feature::forward_region)?;
        self.forward_from(x, next, &mut Tap::default())
    }

    fn patched_batch(&self, batch: usize) -> usize {
        region::patched_batch(batch)
    }
}

impl MobileNetV2 {
    /// Features `first..` and the classifier, from feature `first`'s input.
    fn forward_from(&self, mut x: Tensor, first: usize, tap: &mut Tap) -> candle_core::Result<Tensor> {
        for f in &self.features[first..] {
            let y = f.forward(&x, tap)?;
            x = tap.at(&f.name, y)?;
        }
        let x = tap.at("avgpool", global_avg_pool(&x)?)?;
        tap.at("classifier.1", self.classifier.forward(&x)?)
    }
}
