#!/usr/bin/env bash
# What each of examples/gpt2's speed options is worth on one GPU: the
# example at one batch size with the full set of bench/gpt2.sh's row 5
# and with each option taken away (or, for an option not in row 5 yet, added),
# in one call, one process, bf16, GPT-2 124M, seq 1024. Prints a table of
# step ms and peak MB; raw timing lines and logs go to $OUT.
#   bench/gpt2_options.sh [batch=16] [steps=30] [warm-up=10]
# GPT2_CONFIG=tiny GPT2_SEQ=64 make a smoke test of it on a CPU.
# On the GPU machine: bench/gpu_run.sh options (GPT2_OPTIONS_BATCH=..).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
BATCH="${1:-16}"; STEPS="${2:-30}"; SKIP="${3:-10}"; CONFIG="${GPT2_CONFIG:-124M}"; SEQ="${GPT2_SEQ:-1024}"

# Each line: a name, then the flags (the defaults already hold the fused
# loss and the CUDA graph).
VARIANTS=(
  "row 5|--optimizer fused --master-weights"
  "row 5 + bf16 logits|--optimizer fused --master-weights --bf16-logits"
  "row 5 - fused AdamW|--master-weights"
  "row 5 - CUDA graph|--optimizer fused --master-weights --no-cuda-graph"
  "row 5 - master weights|--optimizer fused"
  "row 5 - fused loss|--optimizer fused --master-weights --no-fused-loss"
  "defaults (row 9)|"
)
: >"$OUT/timing.txt"
status=0
for i in "${!VARIANTS[@]}"; do
  name="${VARIANTS[$i]%%|*}"; flags="${VARIANTS[$i]#*|}"
  # shellcheck disable=SC2086  # the flags are words
  "$B/accel" launch --num_processes 1 --mixed_precision bf16 --dynamo_backend no "$B/examples/gpt2" --config "$CONFIG" \
      --seq "$SEQ" --batch "$BATCH" --steps "$STEPS" --timing-skip "$SKIP" --timing $flags >"$OUT/variant$i.log" 2>&1 \
    || { echo "'$name' failed:"; tail -5 "$OUT/variant$i.log"; status=1; continue; }
  echo "$name|$flags|$(grep '^timing ' "$OUT/variant$i.log" | sed 's/^timing //')" >>"$OUT/timing.txt"
done
"$PY" - "$OUT/timing.txt" "$BATCH" <<'PYEOF'
import json, sys
t0 = json.loads(open(sys.argv[1]).readline().split("|", 2)[2])
print(f"GPT-2 {t0['config']}, seq {t0['seq']}, bf16, batch {sys.argv[2]}, one process")
print(f"{'variant':<26} {'flags':<58} {'step ms':>8} {'peak MB':>8}")
for line in open(sys.argv[1]):
    name, flags, timing = line.rstrip("\n").split("|", 2)
    t = json.loads(timing)
    print(f"{name:<26} {flags or '(none)':<58} {t['step_ms']:>8.1f} {t['peak_mem_mb']:>8.0f}")
PYEOF
echo "logs: $OUT"
exit $status
