#!/usr/bin/env bash
# What each model-parallel dimension costs against data parallelism on the
# same ranks (issue 25): bench_parallel (bench/parallel.cpp) under
# `accel launch`, one layout after the other, the same model, global batch
# and steps. Prints a table: global tokens/s, the ratio to pure DP on the
# same number of ranks, and per rank the training state held (parameters,
# gradients, AdamW moments) and the peak resident memory.
#
#   bench/parallel.sh [layout ...]        layout: dpWcpXtpYppZ, e.g. dp2 tp2 pp2 cp2 dp2tp2 tp2pp2 cp2a
#                                        (a trailing "a": cp's alltoall ring instead of allgather)
#   env: WORLD=2 (ranks; every layout's product must equal it), GPU=0 (1: one process per GPU, NCCL),
#        ARGS="--layers 4 --width 256 --heads 8 --vocab 8192 --seq 256 --batch 8 --steps 8 --timing-skip 3"
#        (passed to bench_parallel), MICROBATCHES=4 (per replica, pipeline layouts)
# Default layouts: pure DP, then every split of WORLD ranks into dp, tp and
# pp, then dp x cp with each cp strategy.
# Needs bench_parallel and accel built (ninja -C build bench_parallel accel).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
WORLD="${WORLD:-2}"; GPU="${GPU:-0}"; MICROBATCHES="${MICROBATCHES:-4}"
ARGS="${ARGS:-}"
LAYOUTS=("$@")
if [[ ${#LAYOUTS[@]} -eq 0 ]]; then
  LAYOUTS=("dp$WORLD")
  for tp in $(seq 1 "$WORLD"); do
    for pp in $(seq 1 "$WORLD"); do
      (( WORLD % (tp * pp) == 0 )) || continue
      dp=$(( WORLD / (tp * pp) ))
      (( tp * pp > 1 )) && LAYOUTS+=("dp${dp}tp${tp}pp${pp}")
    done
  done
  for cp in $(seq 2 "$WORLD"); do
    (( WORLD % cp == 0 )) && LAYOUTS+=("dp$(( WORLD / cp ))cp${cp}" "dp$(( WORLD / cp ))cp${cp}a")
  done
fi
DEVICE_FLAGS=(--cpu); [[ "$GPU" == 1 ]] && DEVICE_FLAGS=()
: >"$OUT/parallel.jsonl"
for layout in "${LAYOUTS[@]}"; do
  dp=$(sed -n 's/.*dp\([0-9]*\).*/\1/p' <<<"$layout"); tp=$(sed -n 's/.*tp\([0-9]*\).*/\1/p' <<<"$layout")
  pp=$(sed -n 's/.*pp\([0-9]*\).*/\1/p' <<<"$layout"); cp=$(sed -n 's/.*cp\([0-9]*\).*/\1/p' <<<"$layout")
  dp="${dp:-1}"; tp="${tp:-1}"; pp="${pp:-1}"; cp="${cp:-1}"
  strategy=allgather; [[ "$layout" == *a ]] && strategy=alltoall
  # shellcheck disable=SC2086
  if "$B/accel" launch "${DEVICE_FLAGS[@]}" --num_processes "$WORLD" "$B/bench/bench_parallel" \
      --dp "$dp" --cp "$cp" --cp-strategy "$strategy" --tp "$tp" --pp "$pp" --microbatches "$MICROBATCHES" --gpu "$GPU" $ARGS >"$OUT/$layout.log" 2>&1; then
    grep '^parallel ' "$OUT/$layout.log" | sed 's/^parallel //' >>"$OUT/parallel.jsonl"
  else
    echo "$layout failed:"; tail -5 "$OUT/$layout.log"
  fi
done

"$PY" - "$OUT/parallel.jsonl" <<'PYEOF'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not runs:
    sys.exit("no layout finished")
r0 = runs[0]
print(f"{r0['world']} ranks on {r0['device']}, batch {r0['batch']} x seq {r0['seq']}, {r0['timed_steps']} timed steps")
base = next((r for r in runs if r["dp"] == r["world"]), None)
print(f"{'layout':<32} {'tokens/s':>10} {'vs DP':>7} {'state MB/rank (max)':>20} {'peak RSS GiB/rank (max)':>24}")
for r in runs:
    name = f"dp{r['dp']} cp{r['cp']} tp{r['tp']} pp{r['pp']}" + (f" mb{r['microbatches']}" if r["pp"] > 1 else "")
    if r["cp"] > 1:
        name += f" {r['cp_strategy']}"
    ratio = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}" if base else "-"
    state = max(x["state_mb"] for x in r["ranks"])
    rss = max(x["peak_rss_gib"] for x in r["ranks"])
    print(f"{name:<32} {r['tokens_per_s']:>10.0f} {ratio:>7} {state:>20.1f} {rss:>24.2f}")
PYEOF
echo "logs: $OUT"
