#!/usr/bin/env bash
# Set-up (scripts/setup.sh) then the main job: the two-spirals example
# trained by 2 CPU processes under `accel launch`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The main job needs the command line and the example, not the tests.
ACCEL_TARGETS="accel_cli spirals" "$ROOT/scripts/setup.sh"
cd "$ROOT"
B="${BUILD_DIR:-build}"
exec "$B/accel" launch --cpu --num_processes 2 "$B/examples/spirals"
