#!/usr/bin/env bash
# Step time of accel vs Accelerate + PyTorch DDP on the same model, batch
# and threads, in one run, plus each in a single process.
#   bench/train_step.sh [cpu|gpu] [steps=40] [threads per rank=1]
# On CPU: 2 ranks over Gloo; on GPU: 1 rank per GPU (NCCL) and bf16 too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-cpu}"; STEPS="${2:-40}"; THREADS="${3:-1}"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
export OMP_NUM_THREADS="$THREADS" HF_HOME="$(mktemp -d)"
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
run_pair() {  # ranks mixed_precision model batch [optimizer]
  local n="$1" mp="$2" model="$3" batch="$4" opt="${5:-adamw}" cpu=() multi=()
  [[ "$MODE" == cpu ]] && cpu=(--cpu)
  [[ "$n" -gt 1 ]] && multi=(--multi_gpu)
  if [[ "$MODE" == cpu ]]; then export CUDA_VISIBLE_DEVICES=; fi
  "$B/accel" launch "${cpu[@]}" --num_processes "$n" --mixed_precision "$mp" --main_process_port "$(port)" \
      "$B/bench/bench_train_step" "$model" "$batch" "$STEPS" "$opt"
  "$PY" -m accelerate.commands.launch "${multi[@]}" --num_processes "$n" --num_machines 1 --mixed_precision "$mp" \
      --dynamo_backend no --main_process_port "$(port)" "$ROOT/bench/train_step.py" "$model" "$batch" "$STEPS" "$opt" 2>/dev/null
}
if [[ "$MODE" == cpu ]]; then
  for model in mlp transformer; do
    batch=32; [[ $model == transformer ]] && batch=8
    for opt in adamw fused; do
      run_pair 1 no "$model" "$batch" "$opt"
      run_pair 2 no "$model" "$batch" "$opt"
    done
  done
else
  NGPU=$(nvidia-smi -L | wc -l)
  for mp in no bf16; do
    for model in mlp transformer; do
      batch=256; [[ $model == transformer ]] && batch=64
      for opt in adamw fused; do
        run_pair 1 "$mp" "$model" "$batch" "$opt"
        [[ "$NGPU" -gt 1 ]] && run_pair "$NGPU" "$mp" "$model" "$batch" "$opt"
      done
    done
  done
fi
