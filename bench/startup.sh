#!/usr/bin/env bash
# Launcher start-up: wall time from the command to its exit for a program
# that starts the processes, forms the group, all-reduces one tensor and
# waits for everyone: accel launch (C++ probe) against accelerate launch and
# torchrun (Python probe), 3 runs each, in one call.
#   bench/startup.sh [cpu|gpu] [processes=2]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-cpu}"; N="${2:-2}"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
export HF_HOME="$(mktemp -d)" ACCEL_PROBE_OUT="$(mktemp -d)/probe"
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("",0)); print(s.getsockname()[1])'; }
cpu=(); pyarg=gpu; multi=()
if [[ "$MODE" == cpu ]]; then cpu=(--cpu); pyarg=cpu; export CUDA_VISIBLE_DEVICES=; fi
[[ "$N" -gt 1 ]] && multi=(--multi_gpu)
timed() {  # label command...
  local label="$1"; shift
  for i in 1 2 3; do
    local t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || echo "$label: run $i failed" >&2
    local ms=$((($(date +%s%N) - t0) / 1000000))
    printf '%s run%d %d.%02d s\n' "$label" "$i" $((ms / 1000)) $((ms % 1000 / 10))
  done
}
timed "accel launch $MODE x$N" "$B/accel" launch "${cpu[@]}" --num_processes "$N" --main_process_port "$(port)" \
  "$B/tests/accel_probe"
timed "accelerate launch $MODE x$N" "$PY" -m accelerate.commands.launch "${multi[@]}" --num_processes "$N" \
  --num_machines 1 --mixed_precision no --dynamo_backend no --main_process_port "$(port)" \
  "$ROOT/bench/startup_probe.py" "$pyarg"
timed "torchrun $MODE x$N" "$PY" -m torch.distributed.run --nproc_per_node "$N" --master_port "$(port)" \
  "$ROOT/bench/startup_probe.py" "$pyarg"
timed "python -c 'import torch'" "$PY" -c 'import torch'
