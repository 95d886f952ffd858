#!/usr/bin/env bash
# CPU Adam throughput, accel against the anchors in the same call:
# accel's cpu_adam_step (fp32 / bf16 gradients), ATen's fused CPU AdamW,
# LibTorch's torch::optim::AdamW, the copy bandwidth of this machine (all in
# bench_cpu_adam), and DeepSpeed's own DeepSpeedCPUAdam (Python, the .venv).
#
#   bench/cpu_adam.sh [NUMEL] [REPEAT]      (defaults: 50000000, 10)
#
# Needs build/bench/bench_cpu_adam (ninja -C build bench_cpu_adam). DeepSpeed
# is installed into the .venv on first use (deepspeed==0.19.8: `pip install
# wheel ninja`, then `pip install --no-build-isolation`); its CPU Adam
# compiles itself the first time it is used (about a minute, no GPU needed).
# Uses about 1 GB of memory per 10 M parameters.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NUMEL="${1:-50000000}"
REPEAT="${2:-10}"
BENCH="${BENCH_BIN:-$ROOT/build/bench/bench_cpu_adam}"
PY="${ACCEL_PYTHON:-$ROOT/.venv/bin/python}"
PIP="$(dirname "$PY")/pip"

echo "# $(date -u +%F) $(uname -m), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$BENCH" --numel "$NUMEL" --repeat "$REPEAT"

if ! "$PY" -c 'import deepspeed' 2>/dev/null; then
  echo "# installing deepspeed==0.19.8 into $(dirname "$(dirname "$PY")")" >&2
  if ! { "$PIP" install -q wheel ninja && "$PIP" install -q --no-build-isolation deepspeed==0.19.8; } >&2; then
    echo "DeepSpeedCPUAdam: install failed (see the pip output above)"
    exit 0
  fi
fi

# DeepSpeedCPUAdam on the same slice, same hyper-parameters, same threads.
DS_BUILD_OPS=0 "$PY" - "$NUMEL" "$REPEAT" <<'PYEOF'
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
