#!/bin/sh
# Makes docs/images/tensorboard_spirals.png: a real run of the spirals
# example logging to TensorBoard, TensorBoard's own server (from the
# project's .venv) on loopback, and its Scalars page shot by headless
# Chromium (Debian package `chromium`).
#
#   tools/tensorboard_screenshot.sh [BUILD_DIR] [OUTPUT_PNG]
#
# BUILD_DIR holds examples/spirals (default: build); OUTPUT_PNG defaults to
# docs/images/tensorboard_spirals.png. Run from the repository root.
set -eu
build=${1:-build}
png=${2:-docs/images/tensorboard_spirals.png}
tensorboard=${TENSORBOARD:-.venv/bin/tensorboard}
chromium=${CHROMIUM:-chromium}
port=${PORT:-6123}

[ -x "$build/examples/spirals" ] || { echo "no $build/examples/spirals: build the 'spirals' target first" >&2; exit 2; }
[ -x "$tensorboard" ] || { echo "no $tensorboard: set up the .venv (or set TENSORBOARD)" >&2; exit 2; }
command -v "$chromium" >/dev/null || { echo "no $chromium: apt-get install chromium (or set CHROMIUM)" >&2; exit 2; }

work=$(mktemp -d)
tb_pid=
cleanup() {
  [ -n "$tb_pid" ] && kill "$tb_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "training spirals, logging to $work/runs ..."
"$build/examples/spirals" --log_with tensorboard --project_dir "$work/runs"

"$tensorboard" --logdir "$work/runs" --host 127.0.0.1 --port "$port" >"$work/tensorboard.log" 2>&1 &
tb_pid=$!
# Wait until the server answers and has read the run.
i=0
until curl -sf "http://127.0.0.1:$port/data/plugin/scalars/tags" | grep -q '"spirals"'; do
  i=$((i + 1))
  if [ $i -gt 120 ]; then
    echo "TensorBoard did not list the run within 60 s:" >&2
    cat "$work/tensorboard.log" >&2
    exit 1
  fi
  sleep 0.5
done

mkdir -p "$(dirname "$png")"
# The page builds itself with JavaScript and fetches the scalars after it
# loads: the virtual-time budget lets that finish before the shot. The
# Scalars tab draws its charts as SVG (the Time Series tab needs WebGL,
# which headless Chromium without a GPU leaves blank); the filter puts the
# three scalars side by side, unsmoothed.
"$chromium" --headless --no-sandbox --hide-scrollbars --user-data-dir="$work/chromium" \
  --window-size=1400,760 --virtual-time-budget=30000 --screenshot="$png" \
  "http://127.0.0.1:$port/?darkMode=false#scalars&tagFilter=train_loss%7Clr%7Ctest_accuracy&_smoothingWeight=0" \
  2>"$work/chromium.log" || {
  cat "$work/chromium.log" >&2
  exit 1
}
echo "wrote $png"
