#!/usr/bin/env bash
# One call on the GPU machine (see ../shared/device/README.md): configure and
# build, run the test suite (gpu tests included), then the benchmarks with
# their Python peers. Full logs go to $OUT (default /tmp/accel_gpu_out).
#   bench/gpu_run.sh [what...]   what: build tests bench data checkpoint startup (default: all), kernels, gpt2, options,
#                                tracking, zero_offload, fsdp_offload and generate (only when named: they take minutes; GPT2_BATCHES="8" runs
#                                one batch size; ZERO_OFFLOAD_ARGS="350M 8 20 8")
# Needs .deps/libgloo-dev_*.deb carried along (the machine has no Gloo headers).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/accel_gpu_out}"; mkdir -p "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
WHAT=("$@"); [[ ${#WHAT[@]} -eq 0 ]] && WHAT=(build tests bench data checkpoint startup)
B=build-gpu
want() { [[ " ${WHAT[*]} " == *" $1 "* ]]; }

if want build; then
  mkdir -p /tmp/deps && dpkg -x .deps/libgloo-dev_*.deb /tmp/deps
  P=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$P" \
    -DGLOO_INCLUDE_DIR=/tmp/deps/usr/include -DACCEL_PYTHON="$(which python3)" >"$OUT/configure.log" 2>&1 \
    && cmake --build $B -j16 >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build ok"
fi
if want tests; then
  (cd $B && ctest -j8 --output-on-failure >"$OUT/ctest.log" 2>&1)
  echo "ctest exit $?"; grep -E "tests passed|FAILED|\(Failed\)|Skipped\)" "$OUT/ctest.log" | head -30
fi
if want bench; then
  for rep in 1; do
    BUILD_DIR="$ROOT/$B" PY="$(which python3)" bench/train_step.sh gpu 200 >"$OUT/train_step.$rep.log" 2>&1
    grep -E "^(accel|accelerate) " "$OUT/train_step.$rep.log"
  done
fi
if want data; then
  "$B/bench/bench_data_loader" 2048 32 40 10 2>&1 | tee "$OUT/data_loader.log"
fi
if want checkpoint; then
  BENCH_BIN="$ROOT/$B/bench/bench_checkpoint_io" ACCEL_PYTHON="$(which python3)" bench/checkpoint_io.sh 4 /tmp/accel_bench_io 2>&1 \
    | tee "$OUT/checkpoint_io.log" | tail -9
fi
if want kernels; then  # accel's CUDA kernels: tests and a GPT-2 loss curve with and without them
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" OUT="$OUT/kernels" bench/kernels_check.sh 2>&1 | tee "$OUT/kernels.log"
fi
if want gpt2; then
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" OUT="$OUT/gpt2" bench/gpt2.sh gpu 2>&1 | tee "$OUT/gpt2.log"
fi
if want options; then  # what each of the GPT-2 example's speed options is worth
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" OUT="$OUT/options" bench/gpt2_options.sh ${GPT2_OPTIONS_BATCH:-16} 2>&1 \
    | tee "$OUT/options.log"
fi
if want tracking; then
  BUILD_DIR="$ROOT/$B" OUT="$OUT/tracking" bench/tracking.sh gpu 2>&1 | tee "$OUT/tracking.log"
fi
if want zero_offload; then
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" OUT="$OUT/zero_offload" NVME_DIR=/tmp/accel_nvme \
    bench/zero_offload.sh ${ZERO_OFFLOAD_ARGS:-} 2>&1 | tee "$OUT/zero_offload.log"
fi
if want fsdp_offload; then
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" OUT="$OUT/fsdp_offload" bench/fsdp_offload.sh ${FSDP_OFFLOAD_SIZES:-} 2>&1 \
    | tee "$OUT/fsdp_offload.log"
fi
if want generate; then
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" OUT="$OUT/generate" bench/generate.sh gpu 2>&1 | tee "$OUT/generate.log"
fi
if want startup; then
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" bench/startup.sh gpu 1 2>&1
  BUILD_DIR="$ROOT/$B" PY="$(which python3)" bench/startup.sh cpu 2 2>&1
fi
