"""Exports a torchvision classifier with the weights of a safetensors file to ONNX, as a
user would (the dynamo exporter, a batch of one at 224×224, weights inside the file):

    python bench/export_onnx.py resnet18 target/bench/resnet18.safetensors target/bench/resnet18.onnx
"""
import sys

import torch
import torchvision
from safetensors.torch import load_file


def main(arch, weights, out):
    model = getattr(torchvision.models, arch)()
    missing, unexpected = model.load_state_dict(load_file(weights), strict=False)
    # Only batch norm's step counters may be absent from a weights file.
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        sys.exit(f"{weights} does not fit torchvision's {arch}: missing {missing}, unexpected {unexpected}")
    model.eval()
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), out, dynamo=True, external_data=False,
                      opset_version=18)


if __name__ == "__main__":
    main(*sys.argv[1:4])
