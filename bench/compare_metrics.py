"""Compares cnnscope's faithfulness numbers with the peer's (`peer_metrics.py`).

    python3 bench/compare_metrics.py SITE/manifest.json PEER_OUT/metrics.json

Prints, per method, the mean deletion and insertion AUC over the photographs for both and
their difference, and per randomisation method the mean Spearman correlation at each
checkpoint for both. Images are matched by name (the peer names them by file stem).
"""
import json
import sys

ours = json.load(open(sys.argv[1]))
peer = json.load(open(sys.argv[2]))


def peer_of(image):
    return next(v for k, v in peer.items() if k == image or k.startswith(image))


faith = {}
for a in ours["artifacts"]:
    if a["kind"] == "faithfulness":
        p = peer_of(a["image"])["faithfulness"].get(a["method"])
        if p is not None:
            faith.setdefault(a["method"], []).append(
                (a["deletion_auc"], p["deletion"]["auc"], a["insertion_auc"], p["insertion"]["auc"])
            )
print(f"{'method':22} {'del ours':>9} {'del peer':>9} {'diff':>7}   {'ins ours':>9} {'ins peer':>9} {'diff':>7}")
for m, rows in faith.items():
    n = len(rows)
    d, dp, i, ip = (sum(r[k] for r in rows) / n for k in range(4))
    print(f"{m:22} {d:9.3f} {dp:9.3f} {d - dp:+7.3f}   {i:9.3f} {ip:9.3f} {i - ip:+7.3f}")
rand = {}
for a in ours["artifacts"]:
    if a["kind"] == "randomisation":
        p = peer_of(a["image"])["randomisation"].get(a["method"])
        if p is not None:
            rand.setdefault(a["method"], []).append((a["spearman"], [c["spearman"] for c in p]))
if rand:
    print("\nSpearman correlation per checkpoint, mean over the photographs (ours / peer):")
for m, rows in rand.items():
    n = len(rows)
    ours_mean = [sum(r[0][k] for r in rows) / n for k in range(len(rows[0][0]))]
    peer_mean = [sum(r[1][k] for r in rows) / n for k in range(len(rows[0][1]))]
    print(f"{m:22} " + " ".join(f"{a:5.2f}/{b:5.2f}" for a, b in zip(ours_mean, peer_mean)))
