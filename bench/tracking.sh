#!/usr/bin/env bash
# What recording every step costs: the GPT-2 example with the speed options
# of bench/gpt2.sh's row 5, with and without `--log_with tensorboard` (loss
# and learning rate logged each step, inside the timed part), alternating
# runs in one call so both see the same machine. Prints the mean step time
# of each run and the overhead of the tracked runs.
#   bench/tracking.sh [gpu|cpu] [runs=3] [steps=60] [batch=8]
# On the GPU machine: bench/gpu_run.sh tracking.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-gpu}"; RUNS="${2:-3}"; STEPS="${3:-60}"; BATCH="${4:-8}"
B="${BUILD_DIR:-$ROOT/build}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
if [[ "$MODE" == cpu ]]; then
  ARGS=(--config tiny --seq 64 --batch "$BATCH" --steps "$STEPS" --timing-skip 5)
  export CUDA_VISIBLE_DEVICES=
else
  ARGS=(--config 124M --seq 1024 --batch "$BATCH" --steps "$STEPS" --timing-skip 10
        --mixed-precision bf16 --optimizer fused --fused-loss --cuda-graph --master-weights)
fi

step_ms() { sed -n 's/.*"step_ms": *\([0-9.e+-]*\).*/\1/p' "$1"; }
run() {  # name [flags...]
  local name="$1"; shift
  "$B/examples/gpt2" "${ARGS[@]}" --timing "$@" >"$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; exit 1; }
  step_ms "$OUT/$name.log"
}

plain=(); tracked=()
for ((r = 1; r <= RUNS; r++)); do
  plain+=("$(run "plain.$r")")
  tracked+=("$(run "tracked.$r" --log_with tensorboard --project_dir "$OUT/runs.$r")")
  echo "run $r: without tracking ${plain[-1]} ms/step, with tensorboard ${tracked[-1]} ms/step"
done
python3 - "${plain[*]}" "${tracked[*]}" <<'PY'
import statistics, sys
plain = [float(x) for x in sys.argv[1].split()]
tracked = [float(x) for x in sys.argv[2].split()]
p, t = statistics.median(plain), statistics.median(tracked)
print(f"median step: without tracking {p:.3f} ms, with tensorboard {t:.3f} ms, overhead {100 * (t - p) / p:+.2f}%")
PY
ls "$OUT"/runs.1/gpt2/ | head -3
