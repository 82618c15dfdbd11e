//! ResNet-18, -34 and -50 (He et al. 2015) as torchvision builds them (v1.5: in a
//! bottleneck block the stride is on the 3×3 convolution). Convolutions have no bias and
//! are followed by batch norm (ε = 1e-5); a block's shortcut is a 1×1 convolution with
//! batch norm (`layerX.0.downsample.0` / `.1`) where the shape changes.
//!
//! Named layers are the torchvision module paths, each the module's output as a PyTorch
//! forward hook sees it: `conv1`, `bn1`, `relu`, `maxpool`, `layer1` … `layer4` (the
//! output of each stage: its last block, after the addition and ReLU), `avgpool`
//! (flattened to one value per channel), `fc` (the logits).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::layer::{linear_tensors, Net, Tensors};
use std::sync::Arc;

use super::nn::{fast_dtype, global_avg_pool, linear, out_size, BatchNorm, Conv, ConvConfig, Linear, Pad};
use super::region::{self, Region};
use super::{Architecture, InputSpec, LayerInfo, LayerKind, Model, Tap};
use crate::ops::bias::Act;
use crate::ops::max_pool2d;
use crate::ops::residual::{Residual, Unit};

const EPS: f64 = 1e-5;
const STEM: usize = 64;

pub const RESNET18: Architecture = Architecture {
    id: "resnet18",
    summary: "ResNet-18 (torchvision naming), 11.7M parameters",
    gradcam_layer: "layer4",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors: tensors::<18>,
    build: build::<18>,
    graph: None,
};

pub const RESNET34: Architecture = Architecture {
    id: "resnet34",
    summary: "ResNet-34 (torchvision naming), 21.8M parameters",
    gradcam_layer: "layer4",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors: tensors::<34>,
    build: build::<34>,
    graph: None,
};

pub const RESNET50: Architecture = Architecture {
    id: "resnet50",
    summary: "ResNet-50 (torchvision naming, bottleneck blocks), 25.6M parameters",
    gradcam_layer: "layer4",
    randomisation: &[],
    unit_layers: &[],
    check_input,
    tensors: tensors::<50>,
    build: build::<50>,
    graph: None,
};

/// Blocks per stage, and whether the blocks are bottlenecks.
fn config(depth: usize) -> ([usize; 4], bool) {
    match depth {
        18 => ([2, 2, 2, 2], false),
        34 => ([3, 4, 6, 3], false),
        50 => ([3, 4, 6, 3], true),
        _ => unreachable!("resnet{depth} is not defined"),
    }
}

fn id(depth: usize) -> &'static str {
    match depth {
        18 => "resnet18",
        34 => "resnet34",
        _ => "resnet50",
    }
}

fn check_input(input: &InputSpec) -> Result<(), String> {
    if input.channels != 3 {
        return Err(format!(
            "ResNet takes 3-channel (RGB) input, not {} channel(s)",
            input.channels
        ));
    }
    if input.height < 32 || input.width < 32 {
        return Err(format!(
            "ResNet needs an input of at least 32×32 (it reduces the size 32 times), not {}×{}",
            input.height, input.width
        ));
    }
    Ok(())
}

/// A convolution without bias followed by batch norm, by their module names.
struct ConvBn {
    conv: String,
    bn: String,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
}

impl ConvBn {
    fn new(conv: String, bn: String, cin: usize, cout: usize, k: usize, stride: usize) -> Self {
        ConvBn {
            conv,
            bn,
            cin,
            cout,
            k,
            stride,
        }
    }
    /// No bias (batch norm follows), "same" padding for odd kernels.
    fn config(&self) -> ConvConfig {
        ConvConfig {
            stride: self.stride,
            pad: Pad::Sym((self.k - 1) / 2),
            bias: false,
            ..Default::default()
        }
    }
    fn conv_tensors(&self) -> Tensors {
        Conv::tensors(&self.conv, self.cin, self.cout, self.k, self.config())
    }
    fn bn_tensors(&self) -> Tensors {
        BatchNorm::tensors(&self.bn, self.cout)
    }
    fn tensors(&self) -> Tensors {
        let mut v = self.conv_tensors();
        v.extend(self.bn_tensors());
        v
    }
    fn load(&self, vb: &VarBuilder) -> candle_core::Result<(Conv, BatchNorm)> {
        Ok((
            Conv::new(self.cin, self.cout, self.k, self.config(), vb.pp(&self.conv))?,
            BatchNorm::new(self.cout, EPS, vb.pp(&self.bn))?,
        ))
    }
    /// The convolution with its batch norm folded in (for units inside blocks, whose
    /// pre-norm outputs are not named layers): one op with a bias instead of two.
    fn load_folded(&self, vb: &VarBuilder) -> candle_core::Result<Conv> {
        let (conv, bn) = self.load(vb)?;
        conv.fold(&bn)
    }
}

/// One residual block: the main path (ReLU between its units) and the shortcut.
struct BlockSpec {
    main: Vec<ConvBn>,
    downsample: Option<ConvBn>,
}

impl BlockSpec {
    fn tensors(&self) -> Tensors {
        self.main
            .iter()
            .chain(&self.downsample)
            .flat_map(ConvBn::tensors)
            .collect()
    }
}

/// The blocks of each stage, with torchvision's module names, and the final width.
fn stages(depth: usize) -> (Vec<Vec<BlockSpec>>, usize) {
    let (counts, bottleneck) = config(depth);
    let expansion = if bottleneck { 4 } else { 1 };
    let mut inplanes = STEM;
    let mut stages = Vec::new();
    for (s, (&n, planes)) in counts.iter().zip([64, 128, 256, 512]).enumerate() {
        let mut blocks = Vec::new();
        for b in 0..n {
            let stride = if b == 0 && s > 0 { 2 } else { 1 };
            let p = format!("layer{}.{b}", s + 1);
            let unit = |i: usize, cin, cout, k, stride| {
                ConvBn::new(format!("{p}.conv{i}"), format!("{p}.bn{i}"), cin, cout, k, stride)
            };
            let out = planes * expansion;
            let main = if bottleneck {
                vec![
                    unit(1, inplanes, planes, 1, 1),
                    unit(2, planes, planes, 3, stride),
                    unit(3, planes, out, 1, 1),
                ]
            } else {
                vec![unit(1, inplanes, planes, 3, stride), unit(2, planes, planes, 3, 1)]
            };
            let downsample = (stride != 1 || inplanes != out).then(|| {
                ConvBn::new(
                    format!("{p}.downsample.0"),
                    format!("{p}.downsample.1"),
                    inplanes,
                    out,
                    1,
                    stride,
                )
            });
            blocks.push(BlockSpec { main, downsample });
            inplanes = out;
        }
        stages.push(blocks);
    }
    (stages, inplanes)
}

fn stem() -> ConvBn {
    ConvBn::new("conv1".into(), "bn1".into(), 3, STEM, 7, 2)
}

fn tensors<const DEPTH: usize>(input: &InputSpec, classes: usize) -> Tensors {
    net(DEPTH, input, classes).tensors
}

/// The named layers, each with the tensors it owns (a stage owns its blocks').
fn net(depth: usize, input: &InputSpec, classes: usize) -> Net {
    let (stages, width) = stages(depth);
    let (mut h, mut w) = (out_size(input.height, 7, 2, 3), out_size(input.width, 7, 2, 3));
    let stem = stem();
    let mut net = Net::default();
    net.owning(
        LayerInfo::new("conv1", LayerKind::Conv, vec![STEM, h, w]),
        stem.conv_tensors(),
    );
    net.owning(
        LayerInfo::new("bn1", LayerKind::BatchNorm, vec![STEM, h, w]),
        stem.bn_tensors(),
    );
    net.layer(LayerInfo::new("relu", LayerKind::Relu, vec![STEM, h, w]));
    (h, w) = (out_size(h, 3, 2, 1), out_size(w, 3, 2, 1));
    net.layer(LayerInfo::new("maxpool", LayerKind::MaxPool, vec![STEM, h, w]));
    for (s, blocks) in stages.iter().enumerate() {
        if s > 0 {
            (h, w) = (out_size(h, 3, 2, 1), out_size(w, 3, 2, 1));
        }
        let c = blocks[0].main.last().map_or(0, |u| u.cout);
        net.owning(
            // A stage of residual blocks, each adding its input (or its projection) back.
            LayerInfo::new(format!("layer{}", s + 1), LayerKind::Block, vec![c, h, w]).residual(true),
            blocks.iter().flat_map(BlockSpec::tensors).collect(),
        );
    }
    net.layer(LayerInfo::new("avgpool", LayerKind::AvgPool, vec![width]));
    net.owning(
        LayerInfo::new("fc", LayerKind::Linear, vec![classes]),
        linear_tensors("fc", width, classes),
    );
    net
}

fn build<const DEPTH: usize>(vb: VarBuilder, input: &InputSpec, classes: usize) -> candle_core::Result<Box<dyn Model>> {
    Ok(Box::new(ResNet::new(vb, DEPTH, input, classes)?))
}

/// A residual block, each convolution with its batch norm folded in.
struct Block {
    main: Vec<Conv>,
    downsample: Option<Conv>,
    /// The block as one op (`ops::residual`).
    fused: Option<Arc<Residual>>,
}

impl Block {
    /// What follows the `i`-th convolution of the main path: ReLU between units; the last
    /// one's ReLU comes after the addition.
    fn act(&self, i: usize, guided: bool) -> Act {
        if i + 1 < self.main.len() {
            Act::relu(guided)
        } else {
            Act::Identity
        }
    }

    fn new(main: Vec<Conv>, downsample: Option<Conv>) -> candle_core::Result<Block> {
        let biased = main.iter().chain(&downsample).all(|c| c.bias().is_some());
        let unit = |c: &Conv| match c.bias() {
            Some(b) => Unit::new(c.weight(), b, c.stride(), c.winograd()),
            None => candle_core::bail!("a folded convolution without bias"),
        };
        let fused = if biased {
            let units = main.iter().map(unit).collect::<candle_core::Result<Vec<_>>>()?;
            let shortcut = downsample.as_ref().map(unit).transpose()?;
            Some(Arc::new(Residual::new(units, shortcut)?))
        } else {
            None
        };
        Ok(Block {
            main,
            downsample,
            fused,
        })
    }

    /// Whether a weight takes part in the gradient graph (the weight-gradients method).
    fn tracked(&self) -> bool {
        self.main
            .iter()
            .chain(&self.downsample)
            .any(|c| c.weight().track_op() || c.bias().is_some_and(|b| b.track_op()))
    }

    /// Each convolution's padding for an input of `h × w`: the main path's, then the
    /// shortcut's.
    fn pads(&self, input: (usize, usize)) -> Vec<[usize; 4]> {
        let (mut h, mut w) = input;
        let mut pads = Vec::new();
        for conv in &self.main {
            let p = conv.padding(h, w);
            let k = conv.kernel();
            h = (h + p[0] + p[1]).saturating_sub(k) / conv.stride() + 1;
            w = (w + p[2] + p[3]).saturating_sub(k) / conv.stride() + 1;
            pads.push(p);
        }
        pads.extend(self.downsample.iter().map(|c| c.padding(input.0, input.1)));
        pads
    }

    fn forward(&self, x: &Tensor, tap: &Tap) -> candle_core::Result<Tensor> {
        // The whole block as one op where it applies (see `ops::residual`).
        if let Some(fused) = self
            .fused
            .as_ref()
            .filter(|_| !tap.guided && fast_dtype(x) && !self.tracked())
        {
            let (_, _, h, w) = x.dims4()?;
            return fused.forward(x, self.pads((h, w)));
        }
        let mut y = x.clone();
        for (i, conv) in self.main.iter().enumerate() {
            y = conv.forward_with(&y, self.act(i, tap.guided))?;
        }
        let shortcut = match &self.downsample {
            Some(conv) => conv.forward_with(x, Act::Identity)?,
            None => x.clone(),
        };
        tap.add_relu(&y, &shortcut)
    }

    /// [`Block::forward`] on copies that differ only inside boxes (`Region`).
    fn forward_region(&self, x: &Region) -> candle_core::Result<Region> {
        let mut y: Option<Region> = None;
        for (i, conv) in self.main.iter().enumerate() {
            y = Some(conv_region(y.as_ref().unwrap_or(x), conv, self.act(i, false))?);
        }
        let y = y.ok_or_else(|| candle_core::Error::Msg("a block without convolutions".into()))?;
        let sum = match &self.downsample {
            Some(conv) => y.add(&conv_region(x, conv, Act::Identity)?)?,
            None => y.add(x)?,
        };
        sum.map(Tensor::relu)
    }
}

/// A convolution with its bias and `act` on a `Region`: a 1×1 stride-1 convolution acts
/// pixel by pixel, so its boxes stay as they are.
fn conv_region(r: &Region, conv: &Conv, act: Act) -> candle_core::Result<Region> {
    if conv.kernel() == 1 && conv.stride() == 1 {
        r.map(|t| conv.forward_padded(t, [0; 4], act))
    } else {
        r.conv(conv, act)
    }
}

pub struct ResNet {
    id: &'static str,
    conv1: Conv,
    bn1: BatchNorm,
    stages: Vec<Vec<Block>>,
    fc: Linear,
    layers: Vec<LayerInfo>,
    classes: usize,
}

impl ResNet {
    pub fn new(vb: VarBuilder, depth: usize, input: &InputSpec, classes: usize) -> candle_core::Result<Self> {
        let (conv1, bn1) = stem().load(&vb)?;
        let (specs, width) = stages(depth);
        let stages = specs
            .iter()
            .map(|blocks| {
                blocks
                    .iter()
                    .map(|b| {
                        Block::new(
                            b.main
                                .iter()
                                .map(|u| u.load_folded(&vb))
                                .collect::<candle_core::Result<_>>()?,
                            b.downsample.as_ref().map(|u| u.load_folded(&vb)).transpose()?,
                        )
                    })
                    .collect::<candle_core::Result<Vec<_>>>()
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let fc = linear(width, classes, vb.pp("fc"))?;
        Ok(ResNet {
            id: id(depth),
            conv1,
            bn1,
            stages,
            fc,
            layers: net(depth, input, classes).layers,
            classes,
        })
    }
}

impl Model for ResNet {
    fn arch(&self) -> &'static str {
        self.id
    }
    fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, x: &Tensor, tap: &mut Tap) -> candle_core::Result<Tensor> {
        let x = tap.at("conv1", self.conv1.forward(x)?)?;
        let x = tap.at("bn1", self.bn1.forward(&x)?)?;
        let x = tap.at("relu", tap.relu(&x)?)?;
        let mut x = tap.at("maxpool", max_pool2d(&x, 3, 2, 1)?)?;
        for (s, blocks) in self.stages.iter().enumerate() {
            for block in blocks {
                x = block.forward(&x, tap)?;
            }
            x = tap.at(&format!("layer{}", s + 1), x)?;
        }
        let x = tap.at("avgpool", global_avg_pool(&x)?)?;
        tap.at("fc", self.fc.forward(&x)?)
    }

    /// The stem and the first blocks computed only where each occluded window reaches
    /// (`models::region`): in a 224² input a 32-pixel window reaches about a fifth of the
    /// width at `layer1`; from where the boxes cover the map, ordinary batches.
    fn forward_patched(&self, x: &Tensor, patches: &Tensor, origins: &[(usize, usize)]) -> candle_core::Result<Tensor> {
        if !region::supported(x) {
            return self.forward(&region::copies(x, patches, origins)?, &mut Tap::default());
        }
        let r = Region::new(x, patches, origins)?
            .conv(&self.conv1, Act::Identity)?
            .map(|t| self.bn1.forward(t))?
            .map(Tensor::relu)?;
        let r = r.max_pool_nonnegative(3, 2, 1)?;
        let blocks: Vec<&Block> = self.stages.iter().flatten().collect();
        let (mut x, first) = r.advance(&blocks, |b, r| b.forward_region(r))?;
        for b in &blocks[first..] {
            x = b.forward(&x, &Tap::default())?;
        }
        self.fc.forward(&global_avg_pool(&x)?)
    }

    fn patched_batch(&self, batch: usize) -> usize {
        region::patched_batch(batch)
    }
}
