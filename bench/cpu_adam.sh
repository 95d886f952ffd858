#!/usr/bin/env bash
# CPU Adam throughput, accel against the anchors in the same call:
# accel's cpu_adam_step (fp32 / bf16 gradients), ATen's fused CPU AdamW,
# LibTorch's torch::optim::AdamW, the copy bandwidth of this machine (all in
# bench_cpu_adam), and DeepSpeed's own DeepSpeedCPUAdam (Python, the .venv).
#
#   bench/cpu_adam.sh [NUMEL] [REPEAT] [ALTERNATIONS]   (defaults: 50000000, 5, 3)
#
# The C++ cases and DeepSpeed run in separate processes; on a shared
# machine memory bandwidth moves from minute to minute, so the two are run
# ALTERNATIONS times in turn and each row reports its best: every row gets
# the same chances at a quiet moment. The raw runs are printed first.
#
# Needs build/bench/bench_cpu_adam (ninja -C build bench_cpu_adam). DeepSpeed
# is installed into the .venv on first use (deepspeed==0.19.8: `pip install
# wheel ninja`, then `pip install --no-build-isolation`); its CPU Adam
# compiles itself the first time it is used (about a minute, no GPU needed).
# Uses about 1 GB of memory per 10 M parameters.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NUMEL="${1:-50000000}"
REPEAT="${2:-5}"
ALTERNATIONS="${3:-3}"
BENCH="${BENCH_BIN:-$ROOT/build/bench/bench_cpu_adam}"
PY="${ACCEL_PYTHON:-$ROOT/.venv/bin/python}"
PIP="$(dirname "$PY")/pip"

echo "# $(date -u +%F) $(uname -m), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
RAW="$(mktemp)"
DS_PY="$(mktemp --suffix=.py)"
trap 'rm -f "$RAW" "$DS_PY"' EXIT

DS_OK=1
if ! "$PY" -c 'import deepspeed' >/dev/null 2>&1; then
  echo "# installing deepspeed==0.19.8 into $(dirname "$(dirname "$PY")")" >&2
  if ! { "$PIP" install -q wheel ninja && "$PIP" install -q --no-build-isolation deepspeed==0.19.8; } >&2; then
    echo "DeepSpeedCPUAdam: install failed (see the pip output above)"
    DS_OK=0
  fi
fi

# DeepSpeedCPUAdam on the same slice, same hyper-parameters, same threads.
cat >"$DS_PY" <<'PYEOF'
import sys, time
import torch

numel, repeat = int(sys.argv[1]), int(sys.argv[2])
try:
    from deepspeed.ops.adam import DeepSpeedCPUAdam
except Exception as e:  # noqa: BLE001 - report the exact failure
    print(f"DeepSpeedCPUAdam: import failed: {type(e).__name__}: {e}")
    sys.exit(0)

torch.manual_seed(0)

def measure(name, bytes_per_param, bf16_grads=False):
    p = torch.nn.Parameter(torch.randn(numel))
    p.grad = torch.randn(numel) * 1e-2
    # DeepSpeedCPUAdam takes gradients of the parameters' dtype only: with
    # bf16 gradients its path is a conversion to fp32 first (timed with it).
    g16 = p.grad.to(torch.bfloat16) if bf16_grads else None
    try:
        opt = DeepSpeedCPUAdam([p], lr=1e-3, weight_decay=0.01, adamw_mode=True)
        t0 = time.perf_counter()
        opt.step()  # the first step builds the op (JIT) when it is not cached
        first = time.perf_counter() - t0
        best = 1e30
        for _ in range(repeat):
            t0 = time.perf_counter()
            if bf16_grads:
                p.grad.copy_(g16)
            opt.step()
            best = min(best, time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001
        print(f"{name:<28} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return
    rate = numel / best
    print(f"{name:<28} {rate / 1e6:9.1f} M/s {rate * bytes_per_param / 1e9:7.2f} GB/s   (first step {first:.1f} s)")
    sys.stdout.flush()

print(f"# torch threads {torch.get_num_threads()}")
measure("DeepSpeedCPUAdam fp32 grads", 28)
measure("DeepSpeed bf16->fp32 + step", 26, bf16_grads=True)
PYEOF

for ((i = 1; i <= ALTERNATIONS; i++)); do
  echo "== run $i of $ALTERNATIONS" >&2
  "$BENCH" --numel "$NUMEL" --repeat "$REPEAT" | tee -a "$RAW" >&2
  if ((DS_OK)); then "$PY" "$DS_PY" "$NUMEL" "$REPEAT" 2>/dev/null | tee -a "$RAW" >&2; fi
done

# Best of each row over the runs (rows are "<name, 28 columns> <rate> M/s <GB/s> GB/s [<percent> %]").
grep -m1 '^# numel' "$RAW"
awk '
  /^#/ || /^\[/ || /^W[0-9]/ { next }  # comments, DeepSpeed and torch log lines
  /bandwidth/ { v = $(NF - 1); k = substr($0, 1, 28); if (!(k in bw) || v > bw[k]) bw[k] = v; if (!(k in seen)) { seen[k] = 1; order[++n] = k }; next }
  / M\/s/ { k = substr($0, 1, 28); split(substr($0, 29), f, " "); rate = f[1]; gbs = f[3];
             if (!(k in best) || rate > best[k]) { best[k] = rate; gb[k] = gbs }
             if (!(k in seen)) { seen[k] = 1; order[++n] = k }; next }
  { print }  # failures, verbatim
  END {
    peak = 0; for (k in bw) if (bw[k] > peak) peak = bw[k]
    printf "%-28s %10s %10s %8s\n", "case", "M params/s", "GB/s", "% of bw"
    for (i = 1; i <= n; i++) { k = order[i]
      if (k in bw) printf "%-28s %10s %10.2f\n", k, "", bw[k]
      else printf "%-28s %10.1f %10.2f %7.1f%%\n", k, best[k], gb[k], 100 * gb[k] / peak }
  }' "$RAW"
