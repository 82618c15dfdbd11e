//! EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant: ReLU6, no squeeze-excitation),
//! with the tensor names of its PyTorch port. Convolutions use TensorFlow's "SAME" padding
//! (asymmetric at stride 2) and have no bias; batch norm uses ε = 1e-3.
//!
//! Named layers: `_conv_stem` (conv output), `_bn0` (after batch norm, before ReLU6),
//! `stem` (after ReLU6), `_blocks.0` … `_blocks.15` (each MBConv block's output, after
//! its skip connection), `_conv_head`, `_bn1`, `head` (after ReLU6: 1280 maps),
//! `_avg_pooling` (1280 values), `_fc` (the logits).

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
    id: "efficientnet-lite0",
    summary: "EfficientNet-Lite0 (16 MBConv blocks, ReLU6, TF SAME padding), 4.7M parameters",
    gradcam_layer: "_blocks.15",
    unit_layers: &[],
    randomisation: &[
        "_fc",
        "_conv_head",
        "_blocks.15",
        "_blocks.12",
        "_blocks.8",
        "_blocks.4",
        "_blocks.0",
        "_conv_stem",
    ],
    check_input,
    tensors,
    build,
    graph: None,
};

const EPS: f64 = 1e-3;
const STEM: usize = 32;
const HEAD: usize = 1280;

/// (repeats, kernel, stride, expand ratio, in, out) per stage.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

#[derive(Clone, Copy)]
struct BlockSpec {
    k: usize,
    stride: usize,
    expand: usize,
    cin: usize,
    cout: usize,
}

impl BlockSpec {
    fn mid(&self) -> usize {
        self.cin * self.expand
    }
    fn skip(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
    /// The block's convolutions: (module name, in, out, kernel, configuration), each
    /// followed by the batch norm [`bn_after`] names.
    fn convs(&self) -> Vec<(&'static str, usize, usize, usize, ConvConfig)> {
        let m = self.mid();
        let mut v = Vec::new();
        if self.expand != 1 {
            v.push(("_expand_conv", self.cin, m, 1, same(1, 1)));
        }
        v.push(("_depthwise_conv", m, m, self.k, same(self.stride, m)));
        v.push(("_project_conv", m, self.cout, 1, same(1, 1)));
        v
    }

    /// The tensors of the block named `prefix`, in state-dict order.
    fn tensors(&self, prefix: &str) -> Tensors {
        let mut t = Vec::new();
        for (conv, cin, cout, k, cfg) in self.convs() {
            t.extend(Conv::tensors(&format!("{prefix}.{conv}"), cin, cout, k, cfg));
            t.extend(BatchNorm::tensors(&format!("{prefix}.{}", bn_after(conv)), cout));
        }
        t
    }
}

/// The batch norm after each of a block's convolutions.
fn bn_after(conv: &str) -> &'static str {
    match conv {
        "_expand_conv" => "_bn0",
        "_depthwise_conv" => "_bn1",
        _ => "_bn2",
    }
}

/// The port's convolutions: TensorFlow's SAME padding, no bias (batch norm follows).
fn same(stride: usize, groups: usize) -> ConvConfig {
    ConvConfig {
        stride,
        pad: Pad::Same,
        groups,
        bias: false,
    }
}

/// The 16 blocks: only the first of a stage has the stage's stride and input width.
fn blocks() -> Vec<BlockSpec> {
    let mut v = Vec::new();
    for &(repeats, k, stride, expand, cin, cout) in &STAGES {
        for r in 0..repeats {
            v.push(BlockSpec {
                k,
                stride: if r == 0 { stride } else { 1 },
                expand,
                cin: if r == 0 { cin } else { cout },
                cout,
            });
        }
    }
    v
}

fn check_input(input: &InputSpec) -> Result<(), String> {
    if input.channels != 3 {
        return Err(format!(
            "efficientnet-lite0 takes 3-channel (RGB) input, not {}",
            input.channels
        ));
    }
    if input.height < 32 || input.width < 32 {
        return Err(format!(
            "efficientnet-lite0 needs at least 32×32 pixels, not {}×{}",
            input.height, input.width
        ));
    }
    Ok(())
}

fn tensors(input: &InputSpec, classes: usize) -> Tensors {
    net(input, classes).tensors
}

/// The named layers, each with the tensors it owns (a block owns its convolutions' and
/// batch norms').
fn net(input: &InputSpec, classes: usize) -> Net {
    let (mut h, mut w) = (input.height.div_ceil(2), input.width.div_ceil(2));
    let mut net = Net::default();
    net.owning(
        LayerInfo::new("_conv_stem", LayerKind::Conv, vec![STEM, h, w]),
        Conv::tensors("_conv_stem", input.channels, STEM, 3, same(2, 1)),
    );
    net.owning(
        LayerInfo::new("_bn0", LayerKind::BatchNorm, vec![STEM, h, w]),
        BatchNorm::tensors("_bn0", STEM),
    );
    net.layer(LayerInfo::new("stem", LayerKind::Relu6, vec![STEM, h, w]));
    let stage_of: Vec<usize> = STAGES
        .iter()
        .enumerate()
        .flat_map(|(k, st)| std::iter::repeat_n(k + 1, st.0))
        .collect();
    for (i, s) in blocks().iter().enumerate() {
        let name = format!("_blocks.{i}");
        (h, w) = (h.div_ceil(s.stride), w.div_ceil(s.stride));
        let tensors = s.tensors(&name);
        let info = LayerInfo::new(name, LayerKind::Block, vec![s.cout, h, w])
            .group(format!("stage {}", stage_of[i]))
            .residual(s.skip());
        net.owning(info, tensors);
    }
    net.owning(
        LayerInfo::new("_conv_head", LayerKind::Conv, vec![HEAD, h, w]),
        Conv::tensors("_conv_head", 320, HEAD, 1, same(1, 1)),
    );
    net.owning(
        LayerInfo::new("_bn1", LayerKind::BatchNorm, vec![HEAD, h, w]),
        BatchNorm::tensors("_bn1", HEAD),
    );
    net.layer(LayerInfo::new("head", LayerKind::Relu6, vec![HEAD, h, w]));
    net.layer(LayerInfo::new("_avg_pooling", LayerKind::AvgPool, vec![HEAD]));
    net.owning(
        LayerInfo::new("_fc", LayerKind::Linear, vec![classes]),
        linear_tensors("_fc", HEAD, classes),
    );
    net
}

/// An MBConv block. Its batch norms are not named layers, so each is folded into the
/// convolution before it at load time.
struct Block {
    name: String,
    spec: BlockSpec,
    expand: Option<Conv>,
    depthwise: Conv,
    project: Conv,
    /// The block as one op, for f32 (`ops::mbconv`).
    fused: Option<Arc<MbConv>>,
}

impl Block {
    fn new(vb: VarBuilder, name: String, s: BlockSpec) -> candle_core::Result<Self> {
        let mut convs = Vec::new();
        for (conv, cin, cout, k, cfg) in s.convs() {
            let bn = BatchNorm::new(cout, EPS, vb.pp(bn_after(conv)))?;
            convs.push(Conv::new(cin, cout, k, cfg, vb.pp(conv))?.fold(&bn)?);
        }
        let project = convs.pop().expect("a block ends with its projection");
        let depthwise = convs.pop().expect("a block has a depthwise convolution");
        let expand = convs.pop();
        fn parts(c: &Conv) -> Option<(&Tensor, &Tensor)> {
            c.bias().map(|b| (c.weight(), b))
        }
        let fused = match (expand.as_ref().map(parts), parts(&depthwise), parts(&project)) {
            (e, Some(d), Some(p)) if e.is_none() == expand.is_none() && depthwise.weight().dtype() == DType::F32 => {
                Some(Arc::new(MbConv::new(e.flatten(), d, p, s.stride, s.skip())?))
            }
            _ => None,
        };
        Ok(Block {
            name,
            spec: s,
            expand,
            depthwise,
            project,
            fused,
        })
    }

    /// Whether a weight takes part in the gradient graph (the weight-gradients method).
    fn tracked(&self) -> bool {
        let convs = [self.expand.as_ref(), Some(&self.depthwise), Some(&self.project)];
        convs
            .into_iter()
            .flatten()
            .any(|c| c.weight().track_op() || c.bias().is_some_and(|b| b.track_op()))
    }

    fn forward(&self, x: &Tensor, tap: &mut Tap) -> candle_core::Result<Tensor> {
        // The whole block as one op where it applies (see `ops::mbconv`).
        if let Some(fused) = self
            .fused
            .as_ref()
            .filter(|_| !tap.guided && region::supported(x) && !self.tracked())
        {
            let (_, _, h, w) = x.dims4()?;
            let y = fused.forward(x, self.depthwise.padding(h, w))?;
            return tap.at(&self.name, y);
        }
        let mut h = x.clone();
        if let Some(conv) = &self.expand {
            h = conv.forward_relu6(&h, tap)?;
        }
        h = self.depthwise.forward_relu6(&h, tap)?;
        h = self.project.forward(&h)?;
        if self.spec.skip() {
            h = (h + x)?;
        }
        tap.at(&self.name, h)
    }

    /// [`Block::forward`] on copies that differ only inside boxes (`Region`).
    fn forward_region(&self, x: &Region) -> candle_core::Result<Region> {
        let tap = Tap::default();
        let mut h = match &self.expand {
            Some(conv) => x.map(|t| conv.forward_relu6(t, &tap))?,
            None => x.map(|t| Ok(t.clone()))?,
        };
        h = h.conv(&self.depthwise, Act::Relu6)?;
        h = h.map(|t| self.project.forward(t))?;
        if self.spec.skip() {
            h = h.add(x)?;
        }
        Ok(h)
    }
}

pub struct EfficientNetLite0 {
    stem: Conv,
    bn0: BatchNorm,
    blocks: Vec<Block>,
    head: Conv,
    bn1: BatchNorm,
    fc: Linear,
    layers: Vec<LayerInfo>,
    classes: usize,
}

fn build(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(EfficientNetLite0::new(vb, input, classes)?))
}

impl EfficientNetLite0 {
    pub fn new(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Self> {
        let stem = Conv::new(input.channels, STEM, 3, same(2, 1), vb.pp("_conv_stem"))?;
        let bn0 = BatchNorm::new(STEM, EPS, vb.pp("_bn0"))?;
        let blocks = self::blocks()
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let name = format!("_blocks.{i}");
                Block::new(vb.pp(&name), name, s)
            })
            .collect::<candle_core::Result<_>>()?;
        let head = Conv::new(320, HEAD, 1, same(1, 1), vb.pp("_conv_head"))?;
        let bn1 = BatchNorm::new(HEAD, EPS, vb.pp("_bn1"))?;
        let fc = linear(HEAD, classes, vb.pp("_fc"))?;
        let layers = net(input, classes).layers;
        Ok(EfficientNetLite0 {
            stem,
            bn0,
            blocks,
            head,
            bn1,
            fc,
            layers,
            classes,
        })
    }
}

impl Model for EfficientNetLite0 {
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
        let x = tap.at("_conv_stem", self.stem.forward(x)?)?;
        let x = tap.at("_bn0", self.bn0.forward(&x)?)?;
        let x = tap.at("stem", tap.relu6(&x)?)?;
        self.forward_from(x, 0, tap)
    }

    /// Occlusion's copies: the stem and the blocks compute each copy only over the part of
    /// the map its patch reaches, until that is the whole map (block 8 of 16 for a
    /// 32-pixel patch at 224²); the rest runs on full maps.
    fn forward_patched(&self, x: &Tensor, patches: &Tensor, origins: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        if !region::supported(x) {
            return self.forward(&region::copies(x, patches, origins)?, &mut Tap::default());
        }
        let tap = Tap::default();
        let (x, next) = Region::new(x, patches, origins)?
            .conv(&self.stem, Act::Identity)?
            .map(|t| self.bn0.forward(t))?
            .map(|t| tap.relu6(t))?
            .advance(&self.blocks, Block::forward_region)?;
        self.forward_from(x, next, &mut Tap::default())
    }

    fn patched_batch(&self, batch: usize) -> usize {
        region::patched_batch(batch)
    }
}

impl EfficientNetLite0 {
    /// Blocks `first..` and the head, from block `first`'s input.
    fn forward_from(&self, mut x: Tensor, first: usize, tap: &mut Tap) -> candle_core::Result<Tensor> {
        for b in &self.blocks[first..] {
            x = b.forward(&x, tap)?;
        }
        let x = tap.at("_conv_head", self.head.forward(&x)?)?;
        let x = tap.at("_bn1", self.bn1.forward(&x)?)?;
        let x = tap.at("head", tap.relu6(&x)?)?;
        let x = tap.at("_avg_pooling", global_avg_pool(&x)?)?;
        tap.at("_fc", self.fc.forward(&x)?)
    }
}
