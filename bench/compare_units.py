"""Compares cnnscope's unit analyses (a built site of bench/units.yaml) with the peer's
(`peer_units.py --skip-fv`): top-9 examples and selectivity of every unit, purity and
ablation, and both t-SNE embeddings scored by the same 10-NN accuracy (the peer's:
scikit-learn's 5-fold cross-validated KNeighborsClassifier(10)).

Run: python bench/compare_units.py SITE PEER_OUT  (needs numpy and scikit-learn: the peer venv)
"""
import json, os, sys
import numpy as np

site, peer_dir = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(site, "manifest.json")))
peer = json.load(open(os.path.join(peer_dir, "units.json")))
arts = m["artifacts"]
units = [a for a in arts if a["kind"] == "unit"]
same = sum(a["top"][:9] == peer["units"][a["layer"]]["top9"][a["unit"]] for a in units)
sel = max(abs(a["selectivity"] - peer["units"][a["layer"]]["selectivity"][a["unit"]]) for a in units)
print(f"units: {len(units)}; identical top-9: {same}; largest selectivity difference {sel:.2e}")
d = next(a for a in arts if a["kind"] == "directions")
live = [p for p in d["purity_units"] if p is not None]
alive = [p for p, n in zip(peer["purity_units"], peer["positives_relu4"]) if n > 0]
print(f"top-100 purity, live units: cnnscope {np.mean(live):.3f} (n={len(live)}), peer {np.mean(alive):.3f} (n={len(alive)})")
print(f"top-100 purity, random directions (different seeds' draws): cnnscope {np.mean(d['purity_directions']):.3f}, peer {np.mean(peer['purity_directions']):.3f}")
a = next(a for a in arts if a["kind"] == "ablation")
print("ablation k:", a["k"])
print("  zero k units:      cnnscope", [round(x, 3) for x in a["accuracy_units"]], "peer", [round(x, 3) for x in peer["ablation_units"]])
print("  project out k dirs: cnnscope", [round(x, 3) for x in a["accuracy_directions"]], "peer", [round(x, 3) for x in peer["ablation_directions"]])

from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
import gzip
lb = np.frombuffer(gzip.open("data/mnist/mnist-10k-labels-idx1-ubyte.gz").read()[8:], np.uint8)[8000:].astype(int)
def knn(e):
    return float(cross_val_score(KNeighborsClassifier(10), e, lb, cv=5).mean())
def npy(path):  # cnnscope writes f32 .npy
    return np.load(path).astype(np.float64)
for ours, theirs in (("relu4", "fc2"), ("pool1", "pool1")):
    t = next(x for x in arts if x["kind"] == "tsne" and x["layer"] == ours)
    e = npy(os.path.join(site, t["npy"]))
    p = np.load(os.path.join(peer_dir, f"tsne-{theirs}.npy"))
    print(f"t-SNE {ours}: 10-NN accuracy (5-fold, scikit-learn) cnnscope {knn(e):.4f}, peer (openTSNE) {knn(p):.4f}; "
          f"cnnscope's own leave-one-out figure {t['knn_accuracy']:.4f}")
