#!/usr/bin/env bash
# The largest model on one GPU (issue 26): GPT-2-shaped models of growing
# size trained by one process with full_shard and the parameters, gradients
# and optimizer state offloaded to host memory, bf16 compute, seq 1024,
# AdamW, clipping at 1.0, against Accelerate + FSDP2 with CPUOffloadPolicy
# (bench/fsdp_offload_peer.py) in the same call. Per size and side: tokens/s,
# 6N TFLOP/s (6 x parameters x tokens/s), peak GPU memory, peak host RSS.
# A side that runs out of memory is reported as failed (that is the bound).
#
#   bench/fsdp_offload.sh [LxWxH ...]   (default: 48x1600x25 32x3072x24 32x4096x32)
#   env: BATCH=4 STEPS=8 SKIP=3 SIDES="accel peer" ACCEL_ARGS=""
# On the GPU machine: bench/gpu_run.sh build fsdp_offload
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
BATCH="${BATCH:-4}"; STEPS="${STEPS:-8}"; SKIP="${SKIP:-3}"; SIDES="${SIDES:-accel peer}"
SIZES=("$@"); [[ ${#SIZES[@]} -eq 0 ]] && SIZES=(48x1600x25 32x3072x24 32x4096x32)
LAUNCH=("$PY" -m accelerate.commands.launch)
: >"$OUT/fsdp_offload.jsonl"
for size in "${SIZES[@]}"; do
  IFS=x read -r L W H <<<"$size"
  for side in $SIDES; do
    log="$OUT/$side.$size.log"
    if [[ $side == accel ]]; then
      # shellcheck disable=SC2086
      "$B/examples/gpt2" --n-layer "$L" --n-embd "$W" --n-head "$H" --batch "$BATCH" --seq 1024 --steps "$STEPS" \
        --timing-skip "$SKIP" --mixed-precision bf16 --master-weights --fused-loss --zero-stage 3 --offload-params \
        --timing --phase-timing ${ACCEL_ARGS:-} >"$log" 2>&1
    else
      # torchrun (under accelerate launch) sets OMP_NUM_THREADS=1 unless told:
      # the peer's CPU optimizer step and clipping would then run on one core.
      OMP_NUM_THREADS="$(nproc)" "${LAUNCH[@]}" --use_fsdp --num_processes 1 --mixed_precision bf16 "$ROOT/bench/fsdp_offload_peer.py" \
        --n-layer "$L" --n-embd "$W" --n-head "$H" --batch "$BATCH" --seq 1024 --steps "$STEPS" \
        --timing-skip "$SKIP" >"$log" 2>&1
    fi
    rc=$?
    if grep -q '^timing ' "$log"; then
      grep '^timing ' "$log" | sed "s/^timing /{\"side\": \"$side\", \"size\": \"$size\", \"line\": /; s/\$/}/" \
        >>"$OUT/fsdp_offload.jsonl"
    else
      echo "{\"side\": \"$side\", \"size\": \"$size\", \"failed\": \"exit $rc: $(tail -1 "$log" | tr -d '"\\' | cut -c1-160)\"}" \
        >>"$OUT/fsdp_offload.jsonl"
    fi
  done
done
"$PY" - "$OUT/fsdp_offload.jsonl" "$BATCH" <<'PYEOF'
import json, sys
print(f"GPT-2 shapes, batch {sys.argv[2]}, seq 1024, bf16 compute, AdamW on the CPU, one GPU, one process")
print("| size (layers x width) | side | params | tokens/s | 6N TFLOP/s | GPU peak GiB | host peak RSS GiB |")
print("|---|---|---:|---:|---:|---:|---:|")
for l in open(sys.argv[1]):
    r = json.loads(l)
    name = "x".join(r["size"].split("x")[:2])
    if "failed" in r:
        print(f"| {name} | {r['side']} | | failed: {r['failed']} | | | |")
        continue
    t = r["line"]
    n = t["params"]
    if "phase_ms" in t:
        print(f"<!-- {name} {r['side']} phases ms: {t['phase_ms']} -->")
    if t.get("host_file_rss_gb", 0) > 0.5:
        print(f"<!-- {name} {r['side']} resident pages of mapped files at the end: {t['host_file_rss_gb']:.1f} GiB -->")
    print(f"| {name} | {r['side']} | {n / 1e9:.2f}B | {t['tokens_per_s']:,.0f} | {6 * n * t['tokens_per_s'] / 1e12:.1f} | "
          f"{t['peak_mem_mb'] / 1024:.1f} | {t['host_rss_gb']:.1f} |")
PYEOF
