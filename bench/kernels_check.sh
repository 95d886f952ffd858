#!/usr/bin/env bash
# accel's CUDA kernels on a GPU machine, in one call (bench/gpu_run.sh
# kernels runs it after the build):
#   1. the build has them (ACCEL_CUDA_KERNELS 1 in accel/ops/cuda_kernels.h);
#   2. their tests: each kernel against its ATen path (test_gpu) and the CPU
#      paths against float64 (test_unit);
#   3. GPT-2 124M trained 200 steps on the repository's README.md (its
#      bytes are the tokens), bf16 autocast, with the fused loss, once with
#      the kernels and once without (ACCEL_FUSED_KERNELS=0), and once in
#      float32 without them (the reference of both): the kernels' curve
#      must agree with the ATen run's within bf16 noise (no step more than
#      0.15 apart) and its mean loss of the last 20 steps must be within 1%
#      of float32's, or no farther from it than the ATen bf16 run's. (On an
#      H200 the two bf16 curves drift up to 2% apart over 200 steps, the
#      kernels' closer to float32: they round less, e.g. GELU applied to the
#      GEMM's float32 accumulator.)
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

train() {  # name ACCEL_FUSED_KERNELS mixed-precision
  ACCEL_FUSED_KERNELS="$2" "$B/examples/gpt2" --config 124M --data "$ROOT/README.md" --seq 1024 --batch "$BATCH" \
      --steps "$STEPS" --mixed-precision "$3" --fused-loss --log-every 1 >"$OUT/$1.log" 2>&1 \
    || { echo "gpt2 run '$1' failed:"; tail -20 "$OUT/$1.log"; return 1; }
}
train kernels 1 bf16 && train aten 0 bf16 && train fp32 0 no || exit 1
"$PY" - "$OUT/kernels.log" "$OUT/aten.log" "$OUT/fp32.log" <<'PYEOF' || status=1
import re, sys
def losses(path):
    return [float(m.group(1)) for m in re.finditer(r"^step \d+/\d+\s+loss (\S+)", open(path).read(), re.M)]
k, a, f = losses(sys.argv[1]), losses(sys.argv[2]), losses(sys.argv[3])
assert k and len(k) == len(a) == len(f), f"{len(k)}, {len(a)} and {len(f)} loss lines"
diff = [abs(x - y) for x, y in zip(k, a)]
for i in list(range(0, len(k), max(1, len(k) // 10))) + [len(k) - 1]:
    print(f"step {i + 1:4d}  kernels {k[i]:.4f}  aten {a[i]:.4f}  float32 {f[i]:.4f}  kernels-aten {k[i] - a[i]:+.4f}")
tail = min(20, len(k))
mk, ma, mf = (sum(x[-tail:]) / tail for x in (k, a, f))
print(f"last {tail} steps: kernels {mk:.4f}, aten {ma:.4f}, float32 {mf:.4f}; kernels vs float32 "
      f"{(mk - mf) / mf * 100:+.2f}%, aten vs float32 {(ma - mf) / mf * 100:+.2f}%; kernels vs aten: largest step "
      f"difference {max(diff):.4f}, mean {sum(diff) / len(diff):.4f}")
ok = (abs(mk - mf) <= 0.01 * abs(mf) or abs(mk - mf) <= abs(ma - mf)) and max(diff) <= 0.15
print("loss curves " + ("agree" if ok else "DIFFER"))
sys.exit(0 if ok else 1)
PYEOF
grep -h "mean over" "$OUT/kernels.log" "$OUT/aten.log" "$OUT/fp32.log" | sed 's/^/  /'
echo "logs: $OUT"
exit $status
