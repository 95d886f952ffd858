#!/usr/bin/env bash
# Checkpoint I/O throughput: accel's safetensors save/load of a multi-GB
# state dict against the disk's own sequential speed (dd, same run, same
# directory) and against Python's safetensors (the .venv peer).
#
#   bench/checkpoint_io.sh [GB] [DIR]      (defaults: 2, build/bench_io)
#
# With a GPU it also loads the file onto it (accel: load_file(path, kCUDA),
# Python: load_file(path, device="cuda")), cold and warm cache.
#
# Needs: build/bench/bench_checkpoint_io (cmake --build build --target
# bench_checkpoint_io) and the .venv. Uses ~3x GB of memory and 2x GB of
# disk. "Cold" runs first drop the file's pages from the page cache
# (posix_fadvise DONTNEED; no root needed), so they read from the disk.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GB="${1:-2}"
DIR="${2:-$ROOT/build/bench_io}"
BENCH="${BENCH_BIN:-$ROOT/build/bench/bench_checkpoint_io}"
PY="${ACCEL_PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$DIR"
RESULTS="$(mktemp)"
trap 'rm -f "$RESULTS" "$DIR/dd.bin" "$DIR/python.safetensors"' EXIT

BLOCKS=$(awk -v gb="$GB" 'BEGIN { printf "%d", gb * 1e9 / 16777216 }')
dd_rate() {  # dd's stderr -> GB/s
  sed -n 's/^\([0-9]*\) bytes.* copied, \([0-9.e-]*\) s.*/\1 \2/p' | awk '{ printf "%.3f", $1 / $2 / 1e9 }'
}
evict() { dd if="$1" iflag=nocache count=0 status=none; }

echo "== dd ($BLOCKS x 16 MiB in $DIR)" >&2
echo "dd_write $(dd if=/dev/zero of="$DIR/dd.bin" bs=16M count="$BLOCKS" conv=fsync 2>&1 | dd_rate)" >>"$RESULTS"
evict "$DIR/dd.bin"
echo "dd_read_cold $(dd if="$DIR/dd.bin" of=/dev/null bs=16M 2>&1 | dd_rate)" >>"$RESULTS"
echo "dd_read_warm $(dd if="$DIR/dd.bin" of=/dev/null bs=16M 2>&1 | dd_rate)" >>"$RESULTS"
rm -f "$DIR/dd.bin"

echo "== accel" >&2
"$BENCH" --dir "$DIR" --gb "$GB" --repeat 2 | tee /dev/stderr | awk '!/^#/ { best[$1] = ($3 > best[$1] ? $3 : best[$1]) }
  END { for (k in best) printf "accel_%s %.3f\n", k, best[k] }' >>"$RESULTS"

echo "== python safetensors" >&2
"$PY" - "$DIR/python.safetensors" "$GB" >>"$RESULTS" <<'PYEOF'
import os, sys, time
import torch
from safetensors.torch import save_file, load_file

path, gb = sys.argv[1], float(sys.argv[2])
torch.set_num_threads(1)
count, total = 256, int(gb * 1e9)
state = {}
for i in range(count):
    dtype = torch.float32 if i % 4 == 3 else torch.bfloat16
    elems = total // count // torch.empty((), dtype=dtype).element_size()
    t = torch.empty((elems // 4096, 4096), dtype=dtype)
    t.view(torch.int16).random_()
    state[f"model.layers.{i}.weight"] = t
nbytes = sum(t.nbytes for t in state.values())
dst = {k: torch.zeros_like(t) for k, t in state.items()}

def evict():
    fd = os.open(path, os.O_RDONLY)
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)

best = {}
def note(key, seconds):
    best[key] = max(best.get(key, 0), nbytes / seconds / 1e9)

for _ in range(2):
    t0 = time.perf_counter()
    save_file(state, path)
    fd = os.open(path, os.O_RDONLY); os.fsync(fd); os.close(fd)  # durable, like accel's save
    note("save", time.perf_counter() - t0)
    for key in ("load_cold", "load_warm"):
        if key == "load_cold":
            evict()
        t0 = time.perf_counter()
        loaded = load_file(path)
        for k, t in loaded.items():
            dst[k].copy_(t)
        del loaded
        note(key, time.perf_counter() - t0)
if torch.cuda.is_available():
    for _ in range(2):
        for key in ("gpu_cold", "gpu_warm"):
            if key == "gpu_cold":
                evict()
            t0 = time.perf_counter()
            on_gpu = load_file(path, device="cuda")
            torch.cuda.synchronize()
            note(key, time.perf_counter() - t0)
            del on_gpu
for k in state:
    assert torch.equal(dst[k].view(torch.int16), state[k].view(torch.int16)), k
for key, value in best.items():
    print(f"python_{key} {value:.3f}")
PYEOF

get() { awk -v k="$1" '$1 == k { print $2 }' "$RESULTS"; }
echo
echo "Checkpoint I/O, ${GB} GB state dict (256 tensors, bf16/fp32), $(date -u +%Y-%m-%d), dir $DIR"
echo "best of 2 runs, GB/s (10^9 bytes/s)"
printf '%-34s %10s %10s %10s\n' "" "dd" "accel" "python"
printf '%-34s %10s %10s %10s\n' "write + fsync" "$(get dd_write)" "$(get accel_save)" "$(get python_save)"
printf '%-34s %10s %10s %10s\n' "read into memory, cold cache" "$(get dd_read_cold)" "$(get accel_load_cold)" "$(get python_load_cold)"
printf '%-34s %10s %10s %10s\n' "read into memory, warm cache" "$(get dd_read_warm)" "$(get accel_load_warm)" "$(get python_load_warm)"
printf '%-34s %10s %10s %10s\n' "open, zero-copy (map), cold" "-" "$(get accel_map_cold)" "-"
if [[ -n "$(get accel_gpu_cold)" ]]; then
  printf '%-34s %10s %10s %10s\n' "load to the GPU, cold cache" "-" "$(get accel_gpu_cold)" "$(get python_gpu_cold)"
  printf '%-34s %10s %10s %10s\n' "load to the GPU, warm cache" "-" "$(get accel_gpu_warm)" "$(get python_gpu_warm)"
fi
