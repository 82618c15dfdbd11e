"""Writes the small ONNX files tests/onnx.rs runs, with PyTorch's outputs for them.

Run once, in a throwaway environment with PyTorch (torch, torchvision, onnx, onnxscript,
safetensors):

    python tests/data/onnx/make_fixtures.py tests/data/onnx

For each network it writes NAME-dynamo.onnx (torch.onnx.export's default exporter) and
NAME-torchscript.onnx (dynamo=False), exported for a batch of one, and NAME.safetensors with
an input batch `x` of two images, PyTorch's `logits` for it, and `grad`: the gradient of
the sum over the batch of logit `target` (the tensor `target`) with respect to `x`.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file


class Ops(nn.Module):
    """Every supported operator at odd sizes: stride 2, asymmetric and explicit padding,
    grouped and depthwise convolutions, batch norm that cannot be folded, ceil-mode pooling,
    average pooling without the padding counted, squeeze-excitation, channel shuffle,
    broadcasting arithmetic, concatenation and splits, flatten and view, dropout, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.group = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 12, 1)
        self.se_reduce = nn.Conv2d(12, 4, 1)
        self.se_expand = nn.Conv2d(4, 12, 1)
        self.avg = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.avg2 = nn.AvgPool2d(2, stride=2)
        self.branch = nn.Conv2d(6, 6, 1)
        self.fc = nn.Linear(12, 16)
        self.head = nn.Parameter(torch.randn(16, 5) * 0.3)
        self.drop = nn.Dropout(0.5)
        self.scale = nn.Parameter(torch.rand(1, 12, 1, 1) + 0.5)

    def forward(self, x):
        x = F.relu(self.bn(F.relu(self.stem(x))))
        x = self.pool(x)
        x = F.relu6(self.group(x) * 1.5)
        x = F.pad(x, (1, 0, 0, 1))  # left, right, top, bottom
        x = F.hardswish(self.dw(x))
        x = self.pw(x)
        x = x * torch.sigmoid(x)  # SiLU
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.se_expand(F.relu(self.se_reduce(s))))
        x = x * s
        a, b = x.chunk(2, dim=1)
        b = torch.sigmoid(self.branch(b))
        x = torch.cat([a, b], dim=1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)  # channel shuffle
        x = (x - 0.1) / self.scale + x.mean(dim=(2, 3), keepdim=True)
        x = self.avg(x)
        x = self.avg2(x)
        x = self.drop(x.view(x.size(0), -1))
        x = F.relu(self.fc(x))
        return x @ self.head


class Residual(nn.Module):
    """A residual network in torchvision's style: conv + folded batch norm + ReLU, a block
    with an addition then ReLU, a strided projection, global pooling and flatten."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 7)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.down is None else self.down(x)))


def randomise_bn(m):
    # Non-trivial statistics, so that folding them is tested.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)


def main(out):
    torch.manual_seed(0)
    for name, model, shape, target in [
        ("ops", Ops(), (3, 23, 19), 3),
        ("residual", Residual(), (3, 32, 27), 2),
    ]:
        randomise_bn(model)
        model.eval()
        one = torch.randn(1, *shape)
        for exporter, dynamo in [("dynamo", True), ("torchscript", False)]:
            torch.onnx.export(model, (one,), f"{out}/{name}-{exporter}.onnx", dynamo=dynamo,
                              external_data=False, opset_version=18)
        x = torch.randn(2, *shape, requires_grad=True)
        logits = model(x)
        logits[:, target].sum().backward()
        save_file({"x": x.detach().contiguous(), "logits": logits.detach().contiguous(),
                   "grad": x.grad.contiguous(), "target": torch.tensor([target])},
                  f"{out}/{name}.safetensors")
        print(name, "logits", logits.shape)


if __name__ == "__main__":
    main(sys.argv[1])
