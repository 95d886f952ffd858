#!/usr/bin/env bash
# Opening safetensors files of many tensors, accel against Python's
# safetensors (safe_open from the .venv) on the same files: the header
# parse must stay linear in the number of tensors.
#
#   bench/safetensors_header.sh [DIR] [N...]   (defaults: build/bench_st, 10000 50000 100000 200000)
#
# Needs build/bench/bench_safetensors_header (cmake --build build --target
# bench_safetensors_header) and the .venv. Columns: tensors, header MB, then
# per side the best of 3 of "open" (the header parsed: File(path) /
# safe_open(path).keys()) and "get all" (open, then every tensor by name).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/build/bench_st}"
shift || true
SIZES=("${@:-10000 50000 100000 200000}")
read -r -a SIZES <<<"${SIZES[*]}"
BENCH="${BENCH_BIN:-$ROOT/build/bench/bench_safetensors_header}"
PY="${ACCEL_PYTHON:-$ROOT/.venv/bin/python}"

ACCEL_OUT="$("$BENCH" "$DIR" "${SIZES[@]}")"
PY_OUT="$("$PY" - "$DIR" "${SIZES[@]}" <<'PYEOF'
import sys, time
from safetensors import safe_open
d = sys.argv[1]
for n in map(int, sys.argv[2:]):
    path = f"{d}/{n}.safetensors"
    best_open = best_all = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        with safe_open(path, "pt") as f:
            keys = f.keys()
        best_open = min(best_open, time.perf_counter() - t0)
        t0 = time.perf_counter()
        with safe_open(path, "pt") as f:
            total = sum(float(f.get_tensor(f"model.layers.{i}.weight")[0]) for i in range(n))
        best_all = min(best_all, time.perf_counter() - t0)
        assert len(keys) == n and total == n * (n - 1) / 2
    print(n, f"{best_open:.4f}", f"{best_all:.4f}")
PYEOF
)"
echo "| tensors | header MB | accel open s | Python safe_open s | accel get all s | Python get all s |"
echo "|---:|---:|---:|---:|---:|---:|"
join <(echo "$ACCEL_OUT" | sort -k1,1) <(echo "$PY_OUT" | sort -k1,1) | sort -n -k1,1 |
  awk '{ printf "| %d | %s | %s | %s | %s | %s |\n", $1, $2, $3, $5, $4, $6 }'
