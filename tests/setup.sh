#!/usr/bin/env bash
# What the browser tests need, installed when missing: Debian's Chromium, a font with
# Chinese characters (the Chinese notes' screenshots), and tests/browser's npm packages
# (playwright-core, pinned by its package-lock.json).
# The test command (README.md) is `tests/setup.sh && cargo test --release`.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=()
if ! command -v chromium > /dev/null && [ -z "${CHROMIUM:-}" ]; then packages+=(chromium); fi
if ! { command -v fc-list > /dev/null && fc-list :lang=zh | grep -q .; }; then packages+=(fonts-wqy-microhei); fi
if [ ${#packages[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "installing for the browser tests: apt-get install ${packages[*]}" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" > /dev/null
fi
command -v node > /dev/null || { echo "the browser tests need Node.js (node) on the PATH" >&2; exit 1; }
if [ ! -d tests/browser/node_modules/playwright-core ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
