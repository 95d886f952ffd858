#!/usr/bin/env bash
# Set-up (scripts/setup.sh) then the whole test suite: labels unit, dist
# (several processes over Gloo on loopback), peer (against the Python peers
# in .venv) and gpu (skipped where there is no GPU; ctest's summary counts
# the skips). The set-up installs the peers, so a missing one fails its
# tests instead of skipping them (ACCEL_REQUIRE_PEERS=0 to skip instead).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
export ACCEL_REQUIRE_PEERS="${ACCEL_REQUIRE_PEERS:-1}"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" "$@"
