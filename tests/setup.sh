#!/usr/bin/env bash
# What the browser tests need, installed when missing: Debian's Chromium, and
# tests/browser's npm packages (playwright-core, pinned by its package-lock.json).
# The test command (README.md) is `tests/setup.sh && cargo test --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium > /dev/null && [ -z "${CHROMIUM:-}" ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing Chromium for the browser tests (apt-get install chromium)" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > /dev/null
fi
command -v node > /dev/null || { echo "the browser tests need Node.js (node) on the PATH" >&2; exit 1; }
if [ ! -d tests/browser/node_modules/playwright-core ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
