#!/usr/bin/env bash
# accel's CUDA kernels on a GPU machine, in one call (bench/gpu_run.sh
# kernels runs it after the build):
#   1. the build has them (ACCEL_CUDA_KERNELS 1 in accel/ops/cuda_kernels.h);
#   2. their tests: each kernel against its ATen path (test_gpu) and the CPU
#      paths against float64 (test_unit);
#   3. GPT-2 124M trained 200 steps on the repository's README.md (its
#      bytes are the tokens), bf16 autocast, with the fused loss, once with
#      the kernels and once without (ACCEL_FUSED_KERNELS=0): the loss
#      curves must agree within bf16 noise: the mean loss of the last 20
#      steps within 1% and no step more than 0.15 apart.
#   bench/kernels_check.sh [steps=200] [batch=8]
# Logs go to $OUT (default: a temporary folder). Exit 0 when all hold.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${BUILD_DIR:-$ROOT/build}"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$(mktemp -d)}"; mkdir -p "$OUT"
STEPS="${1:-200}"; BATCH="${2:-8}"
status=0

if ! grep -q "define ACCEL_CUDA_KERNELS 1" "$B/include/accel/ops/cuda_kernels.h" 2>/dev/null; then
  echo "FAIL: $B was configured without accel's CUDA kernels (no CUDA compiler found, or LibTorch without"
  echo "CUDA): configure's 'accel: CUDA kernels' line says which; CUDACXX=/path/to/nvcc names the compiler"
  exit 1
fi
echo "build: accel's CUDA kernels compiled in"

"$B/tests/test_gpu" --gtest_filter='SoftmaxCrossEntropyKernelGpu.*:AddLayerNormGpu.*:LayerNormGpu.*:FusedOpsGpu.*:GemmEpilogueGpu.*' >"$OUT/test_gpu.log" 2>&1 \
  || status=1
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[       OK|^\[  FAILED" "$OUT/test_gpu.log"
if [[ -x "$B/tests/test_unit" ]]; then
  "$B/tests/test_unit" --gtest_filter='AddLayerNorm.*:LayerNorm.*:LinearCrossEntropy.*:LinearGeluLinear.*:Linear.*' >"$OUT/test_unit.log" 2>&1 || status=1
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[  FAILED" "$OUT/test_unit.log"
else  # a build of the GPU targets only: the CPU paths are CI's (test_unit there)
  echo "test_unit not built in $B: the CPU paths' tests did not run here"
fi

train() {  # name ACCEL_FUSED_KERNELS
  ACCEL_FUSED_KERNELS="$2" "$B/examples/gpt2" --config 124M --data "$ROOT/README.md" --seq 1024 --batch "$BATCH" \
      --steps "$STEPS" --mixed-precision bf16 --fused-loss --log-every 1 >"$OUT/$1.log" 2>&1 \
    || { echo "gpt2 run '$1' failed:"; tail -20 "$OUT/$1.log"; return 1; }
}
train kernels 1 && train aten 0 || exit 1
"$PY" - "$OUT/kernels.log" "$OUT/aten.log" <<'PYEOF' || status=1
import re, sys
def losses(path):
    return [float(m.group(1)) for m in re.finditer(r"^step \d+/\d+\s+loss (\S+)", open(path).read(), re.M)]
k, a = losses(sys.argv[1]), losses(sys.argv[2])
assert k and len(k) == len(a), f"{len(k)} and {len(a)} loss lines"
diff = [abs(x - y) for x, y in zip(k, a)]
for i in list(range(0, len(k), max(1, len(k) // 10))) + [len(k) - 1]:
    print(f"step {i + 1:4d}  kernels {k[i]:.4f}  aten {a[i]:.4f}  diff {k[i] - a[i]:+.4f}")
tail = min(20, len(k))
mk, ma = sum(k[-tail:]) / tail, sum(a[-tail:]) / tail
print(f"last {tail} steps: kernels {mk:.4f}, aten {ma:.4f} ({(mk - ma) / ma * 100:+.2f}%); "
      f"largest step difference {max(diff):.4f}, mean {sum(diff) / len(diff):.4f}")
ok = abs(mk - ma) <= 0.01 * abs(ma) and max(diff) <= 0.15
print("loss curves " + ("agree" if ok else "DIFFER"))
sys.exit(0 if ok else 1)
PYEOF
grep -h "mean over" "$OUT/kernels.log" "$OUT/aten.log" | sed 's/^/  /'
echo "logs: $OUT"
exit $status
