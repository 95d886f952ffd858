#!/usr/bin/env bash
# GPT-2 training throughput, accel against Accelerate + transformers, in one
# call. Every row trains from random init on random tokens with bf16
# autocast, the same warm-up and timed steps, one process:
#   1 accelerate                  transformers' GPT2LMHeadModel, eager, torch.optim.AdamW (default: foreach)
#   2 accelerate+compile          the same, torch.compile'd
#   3 accelerate+compile+fused    torch.compile + AdamW(fused=True): the reference of the ratio column
#   4 accel                       examples/gpt2 as a user writes it (torch::optim::AdamW, prepared)
#   5 accel+fast                  examples/gpt2 with every speed option on: ACCEL_FAST_FLAGS below
# and prints a table: tokens/s, step ms, peak GPU memory, tokens/s / row 3's.
#
#   bench/gpt2.sh gpu [config=124M] [steps=30] [warm-up=10]   # batches 8 and 16, seq 1024
#   bench/gpt2.sh cpu                                         # smoke test: tiny, seq 64, batch 4, no compile
# GPT2_BATCHES="16" picks other batches. Raw lines and logs go to $OUT
# (default: a temporary folder). On the GPU machine: bench/gpu_run.sh gpt2.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-gpu}"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
export HF_HOME="$OUT/hf_home"  # no user's accelerate default_config.yaml in the way

# The speed options of row 5. Add each new one here as the example gains it
# (e.g. CUDA graphs, a fused cross-entropy, activation checkpointing off/on).
ACCEL_FAST_FLAGS=(--optimizer fused --fused-loss --cuda-graph --master-weights)

if [[ "$MODE" == cpu ]]; then
  CONFIG=tiny; STEPS="${3:-6}"; SKIP="${4:-2}"; SEQ=64; BATCHES=(${GPT2_BATCHES:-4})
  COMPILE=()  # torch.compile on a 2-core CPU takes minutes: rows 2 and 3 run eager
  ACCEL_LAUNCH=(--cpu); ACCELERATE_LAUNCH=(--cpu)
  export CUDA_VISIBLE_DEVICES=
else
  CONFIG="${2:-124M}"; STEPS="${3:-30}"; SKIP="${4:-10}"; SEQ=1024; BATCHES=(${GPT2_BATCHES:-8 16})
  COMPILE=(--compile)
  ACCEL_LAUNCH=(); ACCELERATE_LAUNCH=()
fi
[[ "$MODE" == cpu && -n "${2:-}" ]] && CONFIG="$2"
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
COMMON=(--config "$CONFIG" --seq "$SEQ" --steps "$STEPS" --timing-skip "$SKIP")

peer() {  # row batch [flags...]
  local row="$1" batch="$2"; shift 2
  "$PY" -m accelerate.commands.launch "${ACCELERATE_LAUNCH[@]}" --num_processes 1 --num_machines 1 \
      --mixed_precision bf16 --dynamo_backend no --main_process_port "$(port)" \
      "$ROOT/bench/gpt2_peer.py" "${COMMON[@]}" --batch "$batch" "$@" >"$OUT/row$row.b$batch.log" 2>&1 \
    || { echo "row $row (batch $batch) failed:"; tail -20 "$OUT/row$row.b$batch.log"; return 1; }
  grep '^timing ' "$OUT/row$row.b$batch.log" | sed "s/^timing /$row /" >>"$OUT/timing.txt"
}
accel() {  # row batch [flags...]
  local row="$1" batch="$2"; shift 2
  "$B/accel" launch "${ACCEL_LAUNCH[@]}" --num_processes 1 --num_machines 1 --mixed_precision bf16 \
      --dynamo_backend no --main_process_port "$(port)" \
      "$B/examples/gpt2" "${COMMON[@]}" --batch "$batch" --timing "$@" >"$OUT/row$row.b$batch.log" 2>&1 \
    || { echo "row $row (batch $batch) failed:"; tail -20 "$OUT/row$row.b$batch.log"; return 1; }
  grep '^timing ' "$OUT/row$row.b$batch.log" | sed "s/^timing /$row /" >>"$OUT/timing.txt"
}

: >"$OUT/timing.txt"
status=0
for batch in "${BATCHES[@]}"; do
  peer 1 "$batch" || status=1
  peer 2 "$batch" "${COMPILE[@]}" || status=1
  peer 3 "$batch" "${COMPILE[@]}" --fused || status=1
  accel 4 "$batch" || status=1
  accel 5 "$batch" "${ACCEL_FAST_FLAGS[@]}" || status=1
done

NAMES=("" "accelerate eager" "accelerate + compile" "accelerate + compile + fused AdamW" "accel" "accel + speed options")
[[ "$MODE" == cpu ]] && NAMES[2]="accelerate (compile skipped)" && NAMES[3]="accelerate + fused AdamW (compile skipped)"
"$PY" - "$OUT/timing.txt" "${NAMES[@]:1}" <<'EOF'
import json, sys
rows = [line.split(" ", 1) for line in open(sys.argv[1]) if line.strip()]
names = sys.argv[2:]
runs = [(int(r), json.loads(j)) for r, j in rows]
print(f"GPT-2 {runs[0][1]['config']}, seq {runs[0][1]['seq']}, {runs[0][1]['mixed_precision']}, "
      f"{runs[0][1]['timed_steps']} timed steps" if runs else "no runs finished")
print(f"{'#':>2} {'implementation':<44} {'batch':>5} {'tokens/s':>10} {'step ms':>9} {'peak MB':>9} {'vs 3':>6}")
for batch in sorted({r["batch"] for _, r in runs}):
    ref = next((r["tokens_per_s"] for row, r in runs if row == 3 and r["batch"] == batch), None)
    for row, r in sorted((x for x in runs if x[1]["batch"] == batch), key=lambda x: x[0]):
        ratio = f"{r['tokens_per_s'] / ref:.2f}" if ref else "-"
        print(f"{row:>2} {names[row - 1]:<44} {batch:>5} {r['tokens_per_s']:>10.0f} {r['step_ms']:>9.1f} "
              f"{r['peak_mem_mb']:>9.0f} {ratio:>6}")
EOF
echo "logs: $OUT"
exit $status
