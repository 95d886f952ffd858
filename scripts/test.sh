#!/usr/bin/env bash
# Set-up (scripts/setup.sh) then the whole test suite: labels unit, dist
# (several processes over Gloo on loopback), peer (against the Python peers
# in .venv) and gpu (skipped where there is no GPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" "$@"
