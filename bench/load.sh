#!/usr/bin/env bash
# Loading a sharded checkpoint onto a device, cold and warm page cache:
# accel's load_checkpoint_and_dispatch (bench_load) against transformers'
# from_pretrained(device_map=DEV), Python safetensors' load_file(device=DEV)
# per shard, and the disk's own rate (dd, one stream and one per shard).
#
#   bench/load.sh [DIR]        (default build/bench_load)
#   LOAD_SIZE=tiny|1b|3b       GPT-2-shaped bf16 model (default 3b: ~6.6 GB
#                              in 2 GB shards; tiny: a few MB, to check the
#                              script on any machine)
#   LOAD_DEVICE=cuda|cpu       where the tensors go (default cuda when
#                              torch sees a GPU)
#   LOAD_THREADS=8             accel's read_threads
#   LOAD_REPEAT=2              runs of each measure; the best is reported
#
# "Cold": before each cold run every shard is fsync'ed and dropped from the
# page cache with posix_fadvise(DONTNEED) (no root needed); the share of
# pages still resident afterwards (mincore) is printed with the table: 0
# means the cold runs read from the disk. The checkpoint is kept in DIR for
# the next run (delete it to write a new one).
#
# To the CPU, safetensors' tensors share the files' mappings (the script
# touches one byte a page), so its row measures mapping, not copying into
# memory of one's own as accel and transformers do.
#
# Needs: build/bench/bench_load (ninja -C build bench_load; BENCH_BIN to
# point elsewhere) and a Python with torch, safetensors and transformers
# (ACCEL_PYTHON, default .venv/bin/python). Disk: the checkpoint's size;
# memory: twice its size for transformers' CPU load.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/build/bench_load}"
SIZE="${LOAD_SIZE:-3b}"
BENCH="${BENCH_BIN:-$ROOT/build/bench/bench_load}"
PY="${ACCEL_PYTHON:-$ROOT/.venv/bin/python}"
PEER="$ROOT/bench/load_peer.py"
THREADS="${LOAD_THREADS:-8}"
REPEAT="${LOAD_REPEAT:-2}"
DEVICE="${LOAD_DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
CK="$DIR/$SIZE"
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS"' EXIT

if [[ ! -f "$CK/model.safetensors.index.json" ]]; then
  echo "== writing a $SIZE checkpoint to $CK" >&2
  "$PY" "$PEER" write "$CK" "$SIZE"
fi
BYTES=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["metadata"]["total_size"])' \
  "$CK/model.safetensors.index.json")
SHARDS=("$CK"/*.safetensors)

evict() { "$PY" "$PEER" evict "$CK" | awk '{ print $2 }' >>"$RESULTS.resident"; }
note() { echo "$1 $2" >>"$RESULTS"; echo "$1 $2" >&2; }  # measure, GB/s
rate() { awk '{ print $NF }'; }
now() { date +%s.%N; }

dd_all() {  # sequential, one stream
  local t0 t1
  t0=$(now)
  for f in "${SHARDS[@]}"; do dd if="$f" of=/dev/null bs=16M status=none; done
  t1=$(now)
  awk -v b="$(du -cb "${SHARDS[@]}" | tail -1 | cut -f1)" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.3f", b / (z - a) / 1e9 }'
}
dd_parallel() {  # one stream per shard at once
  local t0 t1
  t0=$(now)
  for f in "${SHARDS[@]}"; do dd if="$f" of=/dev/null bs=16M status=none & done
  wait
  t1=$(now)
  awk -v b="$(du -cb "${SHARDS[@]}" | tail -1 | cut -f1)" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.3f", b / (z - a) / 1e9 }'
}

for ((rep = 1; rep <= REPEAT; rep++)); do
  echo "== run $rep of $REPEAT ($SIZE, $BYTES bytes, ${#SHARDS[@]} shards, to $DEVICE)" >&2
  evict; note dd_cold "$(dd_all)"
  note dd_warm "$(dd_all)"
  evict; note dd_parallel_cold "$(dd_parallel)"
  for temp in cold warm; do
    [[ $temp == cold ]] && evict
    note "accel_$temp" "$("$BENCH" --checkpoint "$CK" --device "$DEVICE" --threads "$THREADS" | rate)"
    [[ $temp == cold ]] && evict
    note "safetensors_$temp" "$("$PY" "$PEER" safetensors "$CK" "$DEVICE" | rate)"
    [[ $temp == cold ]] && evict
    note "transformers_$temp" "$("$PY" "$PEER" transformers "$CK" "$DEVICE" 2>/dev/null | rate)"
  done
done

best() { awk -v k="$1" '$1 == k && $2 > b { b = $2 } END { printf "%.2f", b }' "$RESULTS"; }
resident=$(sort -g "$RESULTS.resident" | tail -1)
rm -f "$RESULTS.resident"
echo
echo "Loading a GPT-2-shaped $SIZE checkpoint ($BYTES bytes bf16, ${#SHARDS[@]} shards) to $DEVICE, $(date -u +%Y-%m-%d)"
echo "best of $REPEAT runs, GB/s (10^9 bytes/s); accel read_threads=$THREADS; pages left after eviction: $resident"
printf '%-24s %10s %10s\n' "" "cold" "warm"
printf '%-24s %10s %10s\n' "dd, one stream" "$(best dd_cold)" "$(best dd_warm)"
printf '%-24s %10s %10s\n' "dd, a stream per shard" "$(best dd_parallel_cold)" "-"
printf '%-24s %10s %10s\n' "accel" "$(best accel_cold)" "$(best accel_warm)"
printf '%-24s %10s %10s\n' "safetensors load_file" "$(best safetensors_cold)" "$(best safetensors_warm)"
printf '%-24s %10s %10s\n' "transformers" "$(best transformers_cold)" "$(best transformers_warm)"
