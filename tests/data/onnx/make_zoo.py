"""Writes what `tests/onnx.rs`'s ignored test `torchvision_classifiers_match_pytorch` reads:
torchvision classifiers that are not built in, with seeded random weights (batch-norm
statistics made non-trivial), exported to ONNX (the dynamo exporter, a batch of one,
224×224), and PyTorch's results for two images: the logits, the saliency (the input
gradient of each image's top logit) and Grad-CAM at the layer cnnscope picks by default
(the last spatial feature map before the pooling, named in `CAM` below as a module of the
PyTorch network, with the function the network applies after it there).

    python tests/data/onnx/make_zoo.py DIR
    CNNSCOPE_ONNX_ZOO=DIR cargo test --release --test onnx -- --ignored

About 60 MB in all, so made on demand rather than shipped.
"""
import sys

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

from make_equivalence import randomise_bn


def densenet_split(model, x):
    # DenseNet's last map is the functional ReLU in its forward (which the exporter names
    # after the op, `relu_120`): the forward written out, to keep that map.
    act = F.relu(model.features(x))
    return act, model.classifier(torch.flatten(F.adaptive_avg_pool2d(act, (1, 1)), 1))


# network: (cnnscope's default Grad-CAM layer, the PyTorch module whose output it is, or a
# function giving that map and the logits).
CAM = {
    "squeezenet1_1": ("classifier.2", "classifier.2"),
    "efficientnet_b0": ("features", "features"),
    "densenet121": ("relu_120", densenet_split),
    "shufflenet_v2_x0_5": ("conv5", "conv5"),
    "mnasnet0_5": ("layers", "layers"),
}


def main(out, only=None):
    for name, (layer, module) in CAM.items():
        if only and name != only:
            continue
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)()
        randomise_bn(model)
        model.eval()
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), f"{out}/{name}.onnx", dynamo=True,
                          external_data=False, opset_version=18)
        x = torch.randn(2, 3, 224, 224, requires_grad=True)
        if callable(module):
            act, logits = module(model, x)
        else:
            kept = {}
            handle = dict(model.named_modules())[module].register_forward_hook(
                lambda mod, i, o: kept.__setitem__("act", o))
            logits = model(x)
            handle.remove()
            act = kept["act"]
        target = logits.argmax(1)
        act.retain_grad()
        logits.gather(1, target[:, None]).sum().backward()
        w = act.grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((w * act).sum(1))
        save_file({"x": x.detach().contiguous(), "logits": logits.detach().contiguous(),
                   "saliency": x.grad.contiguous(), "target": target.contiguous(),
                   "cam": cam.detach().contiguous()}, f"{out}/{name}.safetensors")
        print(name, "Grad-CAM at", layer, tuple(cam.shape))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
