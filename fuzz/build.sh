#!/usr/bin/env bash
# Builds and runs the libFuzzer targets, one per file format accel reads from
# users (see fuzz/README.md):
#   fuzz/build.sh                    build every target into build-fuzz/
#   fuzz/build.sh run 60             build, then fuzz each target for 60 s
#   fuzz/build.sh run 5 yaml_config  only the named targets (without _fuzz)
# Needs clang and its fuzzer runtime (Debian: clang-14 libclang-rt-14-dev).
# The reader under test (and accel's helpers it calls) is compiled here with
# the fuzzer and sanitizer instrumentation; targets that need LibTorch link
# the rest from the library in BUILD_DIR (default build/) and take its
# compile flags from BUILD_DIR/compile_commands.json, so build `accel` first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${BUILD_DIR:-$ROOT/build}" 2>/dev/null && pwd || echo "${BUILD_DIR:-$ROOT/build}")"
OUT="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CXX="${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++ || echo clang++)}"
LAUNCHER="$(command -v ccache || true)"
SAN=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
mkdir -p "$OUT/obj"

ALL=(safetensors_header yaml_config deepspeed_config state_json zero_layout hf_config)
# The sources each target instruments besides fuzz/<target>_fuzz.cpp.
UTIL="src/accel/util/excerpt.cpp src/accel/util/json_depth.cpp src/accel/util/user_json.cpp src/accel/util/checked_number.cpp"
declare -A SOURCES=(
  [safetensors_header]="src/accel/checkpoint/safetensors_format.cpp src/accel/util/excerpt.cpp"
  [yaml_config]="src/accel/launch/cluster_config.cpp src/accel/launch/value.cpp src/accel/checkpoint/atomic_file.cpp src/accel/util/excerpt.cpp src/accel/util/strings.cpp"
  [deepspeed_config]="src/accel/parallel/sharding_config_file.cpp src/accel/util/env.cpp src/accel/util/strings.cpp $UTIL"
  [state_json]="src/accel/accelerator_checkpoint.cpp src/accel/parallel/fsdp/sharded_optimizer_checkpoint.cpp src/accel/parallel/fsdp/fully_sharded_slices.cpp src/accel/parallel/zero/zero_mesh_checkpoint.cpp src/accel/checkpoint/tensor_parallel_optimizer_checkpoint.cpp src/accel/checkpoint/tensor_parallel_slices.cpp src/accel/checkpoint/tensor_slices.cpp src/accel/checkpoint/optimizer_checkpoint.cpp src/accel/checkpoint/optimizer_state.cpp src/accel/data/loader_state.cpp $UTIL"
  [zero_layout]="src/accel/parallel/zero/flat_layout.cpp src/accel/checkpoint/merge_weights.cpp src/accel/checkpoint/tensor_slices.cpp $UTIL"
  [hf_config]="examples/gpt2/config.cpp $UTIL"
)
declare -A TORCH=([deepspeed_config]=1 [state_json]=1 [zero_layout]=1 [hf_config]=1)

# -D, -I and -isystem flags of the library's own compile line.
torch_flags() {
  python3 - "$BUILD/compile_commands.json" <<'PY'
import json, shlex, sys
for e in json.load(open(sys.argv[1])):
    if e["file"].endswith("src/accel/accelerator_checkpoint.cpp"):
        args, out, i = shlex.split(e["command"]), [], 0
        while i < len(args):
            a = args[i]
            if a in ("-isystem", "-I", "-D"):
                out += [a, args[i + 1]]; i += 1
            elif a.startswith(("-D", "-I")):
                out.append(a)
            i += 1
        print(" ".join(shlex.quote(a) for a in out))
        break
PY
}

targets=("${ALL[@]}")
if [[ "${1:-}" == run && $# -gt 2 ]]; then targets=("${@:3}"); fi

TORCH_FLAGS=""
TORCH_LIBS=()
for t in "${targets[@]}"; do
  if [[ -n "${TORCH[$t]:-}" && -z "$TORCH_FLAGS" ]]; then
    [[ -f "$BUILD/compile_commands.json" ]] || { echo "fuzz: configure and build accel in $BUILD first" >&2; exit 1; }
    TORCH_FLAGS="$(torch_flags)"
    TORCH_LIB="$("$ROOT/.venv/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    LIBACCEL="$(find "$BUILD" -maxdepth 2 -name 'libaccel.so' | head -1)"
    [[ -n "$LIBACCEL" ]] || { echo "fuzz: no libaccel.so in $BUILD (cmake --build $BUILD --target accel)" >&2; exit 1; }
    TORCH_LIBS=("$LIBACCEL" -Wl,-rpath,"$(dirname "$LIBACCEL")" -L"$TORCH_LIB" -Wl,-rpath,"$TORCH_LIB" -ltorch -ltorch_cpu -lc10)
  fi
done

for t in "${targets[@]}"; do
  flags=(-std=c++20 -I"$ROOT/include" -I"$ROOT/src" -I"$ROOT/examples")
  # shellcheck disable=SC2206
  [[ -n "${TORCH[$t]:-}" ]] && flags+=($(eval echo "$TORCH_FLAGS"))
  objs=()
  for src in "fuzz/${t}_fuzz.cpp" ${SOURCES[$t]}; do
    obj="$OUT/obj/$t/${src//\//_}.o"
    mkdir -p "$(dirname "$obj")"
    # Rebuilt when its source or any project header is newer (a struct that
    # changed size must not meet objects compiled against its old layout).
    if [[ ! -f "$obj" || "$ROOT/$src" -nt "$obj" ||
      -n "$(find "$ROOT/include" "$ROOT/src" "$ROOT/examples" -name '*.h' -newer "$obj" -print -quit)" ]]; then
      echo "fuzz: compiling $src for $t" >&2
      $LAUNCHER "$CXX" "${flags[@]}" "${SAN[@]}" -c "$ROOT/$src" -o "$obj"
    fi
    objs+=("$obj")
  done
  libs=()
  [[ "$t" == yaml_config ]] && libs+=(-lyaml-cpp)
  [[ -n "${TORCH[$t]:-}" ]] && libs+=("${TORCH_LIBS[@]}")
  "$CXX" "${SAN[@]}" "${objs[@]}" "${libs[@]}" -o "$OUT/${t}_fuzz"
  echo "built $OUT/${t}_fuzz" >&2
done

if [[ "${1:-}" == run ]]; then
  SECONDS_TO_RUN="${2:-60}"
  # LibTorch is not instrumented: its static objects leak by design and its
  # allocations are not ASan's, so leak and mismatch checks are off.
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:alloc_dealloc_mismatch=0:detect_odr_violation=0}"
  status=0
  for t in "${targets[@]}"; do
    work="$OUT/corpus/$t"
    mkdir -p "$work"
    dict=()
    [[ -f "$ROOT/fuzz/$t.dict" ]] && dict=(-dict="$ROOT/fuzz/$t.dict")
    echo "== $t: ${SECONDS_TO_RUN} s" >&2
    # The checked-in seeds stay read-only; new inputs go to build-fuzz/corpus/<target>.
    if ! "$OUT/${t}_fuzz" "$work" "$ROOT/fuzz/corpus/$t" "${dict[@]}" -max_total_time="$SECONDS_TO_RUN" \
      -max_len=65536 -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 -artifact_prefix="$OUT/$t-" \
      2>"$OUT/$t.log"; then
      status=1
      echo "fuzz: $t FAILED; see $OUT/$t.log" >&2
      tail -40 "$OUT/$t.log" >&2
    fi
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "$OUT/$t.log" >&2 || true
  done
  exit "$status"
fi
