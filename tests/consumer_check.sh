#!/usr/bin/env bash
# The `consumer` test: what a user does with an installed accel.
#   1. `cmake --install` the build into a fresh prefix;
#   2. configure tests/consumer (find_package(accel), nothing else: no
#      LibTorch path, no CUDA flags) against that prefix and build it;
#   3. run the program alone and under the installed `accel launch`, with no
#      LD_LIBRARY_PATH: run paths must find libaccel and LibTorch;
#   4. a Release build (the default) installs no debug information.
# Usage: consumer_check.sh <accel build dir>
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/consumer" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/accel_consumer.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
unset LD_LIBRARY_PATH
step() { printf '[consumer] %s\n' "$*"; }

step "install into $WORK/prefix"
cmake --install "$BUILD" --prefix "$WORK/prefix" >"$WORK/install.log" || { cat "$WORK/install.log"; exit 1; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
step "configure and build a project that finds accel"
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_PREFIX_PATH="$WORK/prefix" "${launcher[@]}" >"$WORK/configure.log" 2>&1 ||
  { cat "$WORK/configure.log"; exit 1; }
cmake --build "$WORK/build" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }

step "run it alone"
out=$("$WORK/build/trainer")
echo "$out"
grep -q "consumer: 1 process(es), weight 3.00 bias -1.00" <<<"$out" || { echo "it did not learn y = 3x - 1"; exit 1; }

step "run it under the installed accel launch (2 CPU processes)"
out=$(cd "$WORK" && HF_HOME="$WORK/hf" "$WORK/prefix/bin/accel" launch --cpu --num_processes 2 "$WORK/build/trainer")
echo "$out"
grep -q "consumer: 2 process(es), weight 3.00 bias -1.00" <<<"$out" || { echo "expected 2 processes"; exit 1; }

lib=$(ls "$WORK"/prefix/lib*/libaccel.so.*.*.* | head -1)
size=$(stat -c %s "$lib")
step "installed $(basename "$lib"): $((size / 1024 / 1024)) MiB"
type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
if [[ "$type" == Release ]] && readelf -S "$lib" | grep -q '\.debug_info'; then
  echo "a Release build installed a library with debug information"
  exit 1
fi
step "ok"
