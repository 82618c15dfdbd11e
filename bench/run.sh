#!/usr/bin/env bash
# Runs the peer pipeline and `cnnscope build` of the same workload alternately, ROUNDS times
# each (default 3), and prints each run's wall time and peak RSS, the medians, and the ratio.
#
#   bench/run.sh [ROUNDS] [WORKLOAD]
#
# WORKLOAD is `gallery` (default: bench/gallery.yaml, EfficientNet-Lite0, against
# peer_gallery.py), `resnet50` (bench/resnet50.yaml, the same gallery on ResNet-50 with
# seeded random weights written once into target/bench/ by make_random_torchvision.py,
# against `peer_gallery.py --arch resnet50`; `resnet18` and `vgg16` likewise) or `metrics` (bench/metrics.yaml,
# deletion/insertion and the randomisation test, against peer_metrics.py; it also
# compares the numbers with bench/compare_metrics.py) or `units` (bench/units.yaml, LeNet-5's
# units over 2,000 held-out digits with t-SNE and random directions, against
# `peer_units.py --skip-fv`; compared by bench/compare_units.py) or `featurevis`
# (bench/featurevis.yaml, eight EfficientNet-Lite0 channels optimised at 128×128, against
# `peer_units.py --only-fv` with torch-lucent; compared by bench/compare_featurevis.py) or
# `onnx-resnet18` (bench/onnx-resnet18.yaml: the ResNet-18 workload on the ONNX export of the
# same weights, written by bench/export_onnx.py, against the built-in resnet18 on
# bench/resnet18.yaml — cnnscope against itself, no peer).
#
# Needs: a release build (cargo build --release), the peer's Python environment in
# $PEER_PYTHON (default .venv-peer/bin/python; set up as in ../shared/bench/README.md, plus
# scipy for the metrics peer and safetensors for resnet50), the peer scripts in $PEER_DIR (default ../shared/bench) and
# GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
workload=${2:-gallery}
peer_args=()
peer_python=${PEER_PYTHON:-.venv-peer/bin/python}
peer_dir=${PEER_DIR:-../shared/bench}
case "$workload" in
    gallery) peer_script=${PEER_SCRIPT:-$peer_dir/peer_gallery.py}; config=bench/gallery.yaml ;;
    resnet18|resnet50|vgg16) peer_script=${PEER_SCRIPT:-$peer_dir/peer_gallery.py}; config=bench/$workload.yaml
        peer_args=(--arch "$workload" --weights "target/bench/$workload.safetensors") ;;
    metrics) peer_script=${PEER_SCRIPT:-$peer_dir/peer_metrics.py}; config=bench/metrics.yaml ;;
    units) peer_script=${PEER_SCRIPT:-$peer_dir/peer_units.py}; config=bench/units.yaml
        peer_args=(--lenet models/lenet5-mnist.safetensors --mnist data/mnist --skip-fv) ;;
    featurevis) peer_script=${PEER_SCRIPT:-$peer_dir/peer_units.py}; config=bench/featurevis.yaml
        peer_args=(--lenet models/lenet5-mnist.safetensors --mnist data/mnist --only-fv) ;;
    onnx-resnet18) config=bench/onnx-resnet18.yaml; baseline=bench/resnet18.yaml ;;
    *) echo "unknown workload \`$workload\` (gallery, resnet18, resnet50, vgg16, onnx-resnet18, metrics, units or featurevis)" >&2; exit 1 ;;
esac
# The photographs without anything else in the folder (the peer opens every file).
images=${PEER_IMAGES:-../shared/data/images}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
[ -x target/release/cnnscope ] || cargo build --release
[ -x "$peer_python" ] || { echo "no peer environment at $peer_python (see docs/performance.md)" >&2; exit 1; }
case "$workload" in resnet18|resnet50|vgg16|onnx-resnet18)
    arch=${workload#onnx-}
    if [ ! -f "target/bench/$arch.safetensors" ]; then
        mkdir -p target/bench
        "$peer_python" "$peer_dir/make_random_torchvision.py" "$arch" "target/bench/$arch.safetensors"
    fi ;;
esac
if [ "$workload" = onnx-resnet18 ] && [ ! -f target/bench/resnet18.onnx ]; then
    "$peer_python" bench/export_onnx.py resnet18 target/bench/resnet18.safetensors target/bench/resnet18.onnx
fi

measure() { # label, command...: prints "label seconds peak_rss_mb"
    local label=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$out/rss" "$@" > "$out/log" 2>&1 || { cat "$out/log" >&2; exit 1; }
    t1=$(date +%s.%N)
    printf "%s %.2f %.0f\n" "$label" "$(echo "$t1 - $t0" | bc)" "$(echo "$(cat "$out/rss") / 1024" | bc)"
}

for r in $(seq "$rounds"); do
    rm -rf "$out/peer" "$out/site"
    if [ -n "${baseline:-}" ]; then
        measure peer target/release/cnnscope build --no-cache --config "$baseline" --output "$out/peer" | tee -a "$out/results"
    elif [ "$workload" = units ] || [ "$workload" = featurevis ]; then
        measure peer "$peer_python" "$peer_script" --out "$out/peer" --threads 2 "${peer_args[@]}" | tee -a "$out/results"
    else
        measure peer "$peer_python" "$peer_script" --images "$images" --out "$out/peer" --threads 2 "${peer_args[@]}" | tee -a "$out/results"
    fi
    measure cnnscope target/release/cnnscope build --no-cache --config "$config" --output "$out/site" | tee -a "$out/results"
done
if [ "$workload" = metrics ]; then
    python3 bench/compare_metrics.py "$out/site/manifest.json" "$out/peer/metrics.json"
fi
if [ "$workload" = units ]; then
    "$peer_python" bench/compare_units.py "$out/site" "$out/peer"
fi
if [ "$workload" = featurevis ]; then
    "$peer_python" bench/compare_featurevis.py "$out/site" "$out/peer"
fi

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
p=$(awk '$1=="peer"{print $2}' "$out/results" | median)
c=$(awk '$1=="cnnscope"{print $2}' "$out/results" | median)
prss=$(awk '$1=="peer"{print $3}' "$out/results" | sort -n | tail -1)
crss=$(awk '$1=="cnnscope"{print $3}' "$out/results" | sort -n | tail -1)
[ -n "${baseline:-}" ] && echo "(here \"peer\" is the built-in architecture on $baseline)"
echo "median wall time: peer ${p} s, cnnscope ${c} s; ratio cnnscope/peer $(printf "%.2f" "$(echo "scale=4; $c / $p" | bc)")"
echo "peak RSS: peer ${prss} MB, cnnscope ${crss} MB"
