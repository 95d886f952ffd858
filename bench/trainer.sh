#!/usr/bin/env bash
# accel::Trainer against a hand-written accel loop and transformers' Trainer
# on the same GPT-2 run, in one call, one process each, random tokens:
#   1 accel loop                     the Accelerator loop a user writes (bench_trainer --mode loop)
#   2 accel Trainer                  the same run through accel::Trainer (bench_trainer --mode trainer)
#   3 transformers Trainer + compile GPT2LMHeadModel, torch_compile=True (bench/trainer_peer.py)
# and prints step ms, tokens/s, the Trainer's overhead over the loop (goal:
# under 2%) and the ratio of accel's Trainer to transformers' (goal: >= 1).
#
#   bench/trainer.sh gpu [config=124M] [batch=8] [steps=30] [warm-up=10]   # bf16, seq 1024
#   bench/trainer.sh cpu                                                   # check: tiny, seq 64, fp32, no compile
# Needs bench_trainer built (ninja -C build bench_trainer; BUILD_DIR picks
# another build). Logs and raw lines go to $OUT (default: a temporary folder).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-gpu}"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
if [[ "$MODE" == cpu ]]; then
  CONFIG=tiny; BATCH=4; STEPS=8; SKIP=3; SEQ=64; PRECISION=(); COMPILE=()
  export CUDA_VISIBLE_DEVICES=
else
  CONFIG="${2:-124M}"; BATCH="${3:-8}"; STEPS="${4:-30}"; SKIP="${5:-10}"; SEQ=1024; PRECISION=(--bf16); COMPILE=(--compile)
fi
COMMON=(--config "$CONFIG" --seq "$SEQ" --batch "$BATCH" --steps "$STEPS" --timing-skip "$SKIP" "${PRECISION[@]}")
: >"$OUT/timing.txt"
run() {  # name command...
  local name="$1"; shift
  (cd "$OUT" && "$@") >"$OUT/$name.log" 2>&1 || { echo "$name failed:"; tail -20 "$OUT/$name.log"; return 1; }
  grep '^timing ' "$OUT/$name.log" | sed 's/^timing //' >>"$OUT/timing.txt"
}
status=0
run loop "$B/bench/bench_trainer" --mode loop "${COMMON[@]}" || status=1
run trainer "$B/bench/bench_trainer" --mode trainer "${COMMON[@]}" || status=1
run transformers "$PY" "$ROOT/bench/trainer_peer.py" "${COMMON[@]}" "${COMPILE[@]}" || status=1

"$PY" - "$OUT/timing.txt" <<'PYEOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not runs:
    sys.exit("no runs finished")
r0 = runs[0]
print(f"GPT-2 {r0['config']}, seq {r0['seq']}, batch {r0['batch']}, {r0['timed_steps']} timed steps, {r0['device']}")
print(f"{'implementation':<36} {'step ms':>9} {'tokens/s':>10}")
by = {r["mode"]: r for r in runs}
for r in runs:
    print(f"{r['mode']:<36} {r['step_ms']:>9.2f} {r['tokens_per_s']:>10.0f}")
if "loop" in by and "trainer" in by:
    over = (by["trainer"]["step_ms"] - by["loop"]["step_ms"]) / by["loop"]["step_ms"] * 100
    print(f"Trainer overhead over the loop: {over:+.2f}% of step time (goal: under 2%)")
hf = next((r for m, r in by.items() if m.startswith("transformers")), None)
if hf and "trainer" in by:
    print(f"accel Trainer vs {hf['mode']}: {hf['step_ms'] / by['trainer']['step_ms']:.2f}x (goal: >= 1)")
PYEOF
echo "logs: $OUT"
exit $status
