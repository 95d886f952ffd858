#!/usr/bin/env bash
# accel::Trainer against a hand-written accel loop and transformers' Trainer
# on the same GPT-2 run, in one call, one process each, random tokens:
#   1 accel loop                     the Accelerator loop a user writes (bench_trainer --mode loop)
#   2 accel Trainer                  the same run through accel::Trainer (bench_trainer --mode trainer)
#   3 accel loop + graph             the loop's step captured as a CUDA graph (Accelerator::capture_step)
#   4 accel Trainer + graph          the Trainer with torch_compile (accel's: the step captured as a CUDA graph)
#   5 transformers Trainer + compile GPT2LMHeadModel, torch_compile=True (bench/trainer_peer.py), mode default
#   6 the same, torch_compile_mode="reduce-overhead" (inductor's CUDA graphs)
# and prints step ms, tokens/s, the Trainer's overhead over the loop, eager
# and captured (goal: under 2%), and the ratio of accel's fastest Trainer
# row to transformers' fastest (goal: >= 1). On CPU rows 3-6 are not run.
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
if [[ "$MODE" != cpu ]]; then
  run loop_graph "$B/bench/bench_trainer" --mode loop --compile "${COMMON[@]}" || status=1
  run trainer_graph "$B/bench/bench_trainer" --mode trainer --compile "${COMMON[@]}" || status=1
fi
run transformers "$PY" "$ROOT/bench/trainer_peer.py" "${COMMON[@]}" "${COMPILE[@]}" || status=1
if [[ "$MODE" != cpu ]]; then
  run transformers_ro "$PY" "$ROOT/bench/trainer_peer.py" "${COMMON[@]}" "${COMPILE[@]}" --compile-mode reduce-overhead ||
    status=1
fi

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
for suffix in ("", " + graph"):
    loop, trainer = by.get("loop" + suffix), by.get("trainer" + suffix)
    if loop and trainer:
        over = (trainer["step_ms"] - loop["step_ms"]) / loop["step_ms"] * 100
        print(f"Trainer{suffix} overhead over the loop{suffix}: {over:+.2f}% of step time (goal: under 2%)")
hf = [r for m, r in by.items() if m.startswith("transformers")]
ours = [r for m, r in by.items() if m.startswith("trainer")]
if hf and ours:
    best_hf = min(hf, key=lambda r: r["step_ms"])
    best = min(ours, key=lambda r: r["step_ms"])
    print(f"accel {best['mode']} vs fastest {best_hf['mode']}: {best_hf['step_ms'] / best['step_ms']:.2f}x (goal: >= 1)")
PYEOF
echo "logs: $OUT"
exit $status
