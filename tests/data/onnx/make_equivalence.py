"""Writes what `tests/onnx.rs`'s ignored test `built_in_networks_equal_their_onnx_exports`
reads: torchvision's ResNet-18 and MobileNetV2 with seeded random weights (batch-norm
statistics made non-trivial), as safetensors for the built-in architectures and as ONNX
exports (the dynamo exporter, batch of one, 224×224) with the same weights. About 120 MB,
so made on demand rather than shipped:

    python tests/data/onnx/make_equivalence.py DIR
    CNNSCOPE_ONNX_REFERENCE=DIR cargo test --release --test onnx -- --ignored
"""
import sys

import torch
import torchvision
from safetensors.torch import save_file


def randomise_bn(model):
    # Non-trivial batch-norm statistics and affine parameters, so that folding them is tested.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def main(out):
    torch.manual_seed(0)
    for name in ["resnet18", "mobilenet_v2"]:
        model = getattr(torchvision.models, name)()
        randomise_bn(model)
        model.eval()
        sd = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        save_file(sd, f"{out}/{name}.safetensors")
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), f"{out}/{name}.onnx", dynamo=True,
                          external_data=False, opset_version=18)
        print(name)


if __name__ == "__main__":
    main(sys.argv[1])
