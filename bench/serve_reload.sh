#!/usr/bin/env bash
# How long an edited note takes to be served by `cnnscope serve` on the default gallery:
# from the write to the first response holding the edit (what a reader's open page
# reloads into). The cache must be warm (build the gallery first). The note is restored.
#   bench/serve_reload.sh [ROUNDS] [NOTE]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
note="${2:-content/mnist.md}"
page="notes/$(basename "$note" .md)/"
bin=target/release/cnnscope
[ -x "$bin" ] || cargo build --release
out=$(mktemp -d)
log=$(mktemp)
cp "$note" "$out/note.backup"
# The output beside the cache (same file system: entries are hard-linked, not copied).
"$bin" serve --port 0 --output target/serve-bench-site --quiet 2> "$log" &
pid=$!
trap 'kill $pid 2> /dev/null || true; cp "$out/note.backup" "$note"; rm -rf "$out" "$log"' EXIT
for _ in $(seq 600); do grep -q "at http://" "$log" && break; sleep 0.2; done
addr=$(grep -o 'http://[0-9.:]*/' "$log" | head -1)
echo "serving at $addr; editing $note, fetching ${addr}${page}"
for r in $(seq "$rounds"); do
    sleep 1
    marker="reload-probe-$r-$RANDOM"
    start=$(date +%s.%N)
    printf '\n%s\n' "$marker" >> "$note"
    until curl -s "${addr}${page}" | grep -q "$marker"; do sleep 0.01; done
    end=$(date +%s.%N)
    echo "round $r: served after $(echo "$end - $start" | bc) s"
done
