#!/usr/bin/env bash
# Builds and runs the libFuzzer target for the safetensors header parser.
#   fuzz/build.sh            build into build-fuzz/
#   fuzz/build.sh run 120    build, then fuzz for 120 seconds
# Needs clang and its runtime (Debian: apt-get install clang libclang-rt-14-dev).
# The parser has no LibTorch dependency (safetensors_format.h), so it is
# compiled here with full sanitizer instrumentation on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CXX="${CXX_FUZZ:-clang++}"
mkdir -p "$OUT"
"$CXX" -std=c++20 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$ROOT/include" \
  "$ROOT/fuzz/safetensors_header_fuzz.cpp" "$ROOT/src/accel/checkpoint/safetensors_format.cpp" \
  -o "$OUT/safetensors_header_fuzz"
echo "built $OUT/safetensors_header_fuzz"
if [[ "${1:-}" == run ]]; then
  SECONDS_TO_RUN="${2:-60}"
  mkdir -p "$OUT/corpus"
  # The checked-in seeds stay read-only; new inputs go to build-fuzz/corpus.
  "$OUT/safetensors_header_fuzz" "$OUT/corpus" "$ROOT/fuzz/corpus" \
    -dict="$ROOT/fuzz/safetensors.dict" -max_total_time="$SECONDS_TO_RUN" \
    -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/"
fi
