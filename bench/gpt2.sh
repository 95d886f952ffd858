#!/usr/bin/env bash
# GPT-2 training throughput, accel against Accelerate + transformers, in one
# call. Every row trains from random init on random tokens with bf16
# autocast, the same warm-up and timed steps, one process:
#   1 accelerate                  transformers' GPT2LMHeadModel, eager, torch.optim.AdamW (default: foreach)
#   2 accelerate+compile          the same, torch.compile'd
#   3 accelerate+compile+fused    torch.compile + AdamW(fused=True): the reference of the ratio column
#   4 accel, plain LibTorch       examples/gpt2 without accel's speed: full logits, eager steps, no accel
#                                 kernels (ACCEL_PLAIN_FLAGS below, ACCEL_FUSED_KERNELS=0); torch::optim::AdamW
#   5 accel+fast                  examples/gpt2 with every speed option on: ACCEL_FAST_FLAGS below
#   9 accel defaults              examples/gpt2 with no flags (fused loss, CUDA graph where allowed, accel kernels)
#   6 accelerate+step:default     model + loss compiled as one function (torch.compile mode "default"), fused AdamW
#   7 accelerate+step:autotune    the same, mode "max-autotune-no-cudagraphs"
#   8 accelerate+step:graphs      the same, mode "reduce-overhead" (CUDA graphs)
# Rows 6-8 are the strongest peer a Python user writes with the same loop
# (clip, schedule, one loss.item() a step): inductor fuses the loss into the
# output layer instead of materialising float32 logits. The table prints
# tokens/s, step ms, peak GPU memory, and tokens/s over the fastest peer row
# (1-3, 6-8) of the same batch. Rows print in the order 1-3, 6-8, 4, 9, 5.
#
#   bench/gpt2.sh gpu [config=124M] [steps=30] [warm-up=10]   # batches 8, 16 and 32, seq 1024
#   bench/gpt2.sh cpu                                         # smoke test: tiny, seq 64, batch 4, no compile
# GPT2_BATCHES="16" picks other batches, GPT2_ROWS="3 5 6" other rows (default
# all; cpu: 1-5, since compiling on a small CPU takes minutes). The warm-up
# steps hold the compilation (max-autotune: minutes), never timed. Raw lines
# and logs go to $OUT (default: a temporary folder). On the GPU machine:
# bench/gpu_run.sh gpt2.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-gpu}"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
export HF_HOME="$OUT/hf_home"  # no user's accelerate default_config.yaml in the way

# The speed options of row 5 beyond the example's defaults (the fused loss and
# the CUDA graph are on by default): accel's AdamW and bf16 weights with fp32
# masters (not the default: the model's weights and residual stream are then
# bf16, where autocast keeps them in float32). Add each new one here.
ACCEL_FAST_FLAGS=(--optimizer fused --master-weights)
# Row 4: the example with every speed option off.
ACCEL_PLAIN_FLAGS=(--no-fused-loss --no-cuda-graph)

if [[ "$MODE" == cpu ]]; then
  CONFIG=tiny; STEPS="${3:-6}"; SKIP="${4:-2}"; SEQ=64; BATCHES=(${GPT2_BATCHES:-4}); ROWS=(${GPT2_ROWS:-1 2 3 4 5 9})
  COMPILE=()  # torch.compile on a 2-core CPU takes minutes: rows 2 and 3 run eager
  ACCEL_LAUNCH=(--cpu); ACCELERATE_LAUNCH=(--cpu)
  export CUDA_VISIBLE_DEVICES=
else
  CONFIG="${2:-124M}"; STEPS="${3:-30}"; SKIP="${4:-10}"; SEQ=1024; BATCHES=(${GPT2_BATCHES:-8 16 32})
  ROWS=(${GPT2_ROWS:-1 2 3 4 5 6 7 8 9})
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
for row in "${ROWS[@]}"; do
  [[ "$row" =~ ^[1-9]$ ]] || { echo "GPT2_ROWS: row '$row', expected numbers from 1 to 9"; exit 2; }
done
want_row() { [[ " ${ROWS[*]} " == *" $1 "* ]]; }
for batch in "${BATCHES[@]}"; do
  want_row 1 && { peer 1 "$batch" || status=1; }
  want_row 2 && { peer 2 "$batch" "${COMPILE[@]}" || status=1; }
  want_row 3 && { peer 3 "$batch" "${COMPILE[@]}" --fused || status=1; }
  want_row 6 && { peer 6 "$batch" --compile-step default --fused || status=1; }
  want_row 7 && { peer 7 "$batch" --compile-step max-autotune-no-cudagraphs --fused || status=1; }
  want_row 8 && { peer 8 "$batch" --compile-step reduce-overhead --fused || status=1; }
  want_row 4 && { ACCEL_FUSED_KERNELS=0 accel 4 "$batch" "${ACCEL_PLAIN_FLAGS[@]}" || status=1; }
  want_row 9 && { accel 9 "$batch" || status=1; }
  want_row 5 && { accel 5 "$batch" "${ACCEL_FAST_FLAGS[@]}" || status=1; }
done

NAMES=("" "accelerate eager" "accelerate + compile" "accelerate + compile + fused AdamW" "accel, plain LibTorch path"
       "accel + speed options" "accelerate, model+loss compiled (default)" "accelerate, model+loss compiled (max-autotune)"
       "accelerate, model+loss compiled (reduce-overhead)" "accel defaults (no flags)")
[[ "$MODE" == cpu ]] && NAMES[2]="accelerate (compile skipped)" && NAMES[3]="accelerate + fused AdamW (compile skipped)"
"$PY" - "$OUT/timing.txt" "${NAMES[@]:1}" <<'EOF'
import json, sys
rows = [line.split(" ", 1) for line in open(sys.argv[1]) if line.strip()]
names = sys.argv[2:]
runs = [(int(r), json.loads(j)) for r, j in rows]
print(f"GPT-2 {runs[0][1]['config']}, seq {runs[0][1]['seq']}, {runs[0][1]['mixed_precision']}, "
      f"{runs[0][1]['timed_steps']} timed steps" if runs else "no runs finished")
print(f"{'#':>2} {'implementation':<50} {'batch':>5} {'tokens/s':>10} {'step ms':>9} {'peak MB':>9} {'vs best peer':>12}")
PEERS = {1, 2, 3, 6, 7, 8}
ORDER = [1, 2, 3, 6, 7, 8, 4, 9, 5]
for batch in sorted({r["batch"] for _, r in runs}):
    ref = max((r["tokens_per_s"] for row, r in runs if row in PEERS and r["batch"] == batch), default=None)
    for row, r in sorted((x for x in runs if x[1]["batch"] == batch), key=lambda x: ORDER.index(x[0])):
        ratio = f"{r['tokens_per_s'] / ref:.2f}" if ref else "-"
        print(f"{row:>2} {names[row - 1]:<50} {batch:>5} {r['tokens_per_s']:>10.0f} {r['step_ms']:>9.1f} "
              f"{r['peak_mem_mb']:>9.0f} {ratio:>12}")
EOF
echo "logs: $OUT"
exit $status
