#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 / Ubuntu 24.04 machine:
#   1. installs the Debian packages that are missing,
#   2. makes the project-local .venv (LibTorch wheel + Python peers), reusing
#      one cached by the hash of requirements.txt so that a second clone does
#      not download LibTorch again,
#   3. configures and builds with CMake + Ninja + ccache.
# Environment knobs: ACCEL_CACHE (cache root, default ~/.cache/accel),
# BUILD_DIR (default build), BUILD_TYPE (default Release),
# ACCEL_TARGETS (what to build, default everything), ACCEL_SKIP_APT=1 to
# skip the package step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${ACCEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/accel}"
BUILD_DIR="${BUILD_DIR:-build}"
BUILD_TYPE="${BUILD_TYPE:-Release}"
mkdir -p "$CACHE"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# ---- 1. Debian packages -------------------------------------------------
# openmpi-bin, mpich, slurm*: the dist tests MpiLaunch.* and SlurmLaunch.*
# start programs under their mpirun / mpiexec / srun (a one-node cluster).
PKGS=(build-essential cmake ninja-build ccache pkg-config git
      openmpi-bin mpich slurmctld slurmd slurm-client
      python3 python3-venv python3-pip
      libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libgmock-dev libbenchmark-dev libgloo-dev
      clang-format-14 clang-14 libclang-rt-14-dev)
if [[ "${ACCEL_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# ---- 2. the .venv -------------------------------------------------------
PY="${PYTHON:-python3}"
KEY=$( (cat requirements.txt; "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)
VENV="$CACHE/venv-$KEY"
if [[ ! -f "$VENV/.complete" ]]; then
  log "creating $VENV (torch wheel and peers; a few minutes the first time)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # pip's own cache (default ~/.cache/pip) keeps the wheels for other keys.
  "$VENV/bin/pip" install -q -r requirements.txt
  touch "$VENV/.complete"
fi
if [[ "$(readlink .venv 2>/dev/null)" != "$VENV" ]]; then
  rm -rf .venv
  ln -s "$VENV" .venv
fi
TORCH_PREFIX=$(.venv/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')

# ---- 3. configure and build --------------------------------------------
export CCACHE_DIR="${CCACHE_DIR:-$CACHE/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
# The precompiled header embeds absolute paths and timestamps; these let
# ccache reuse objects built from a PCH in another clone.
export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
export CCACHE_BASEDIR="$ROOT"
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  log "configuring $BUILD_DIR ($BUILD_TYPE)"
  cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DACCEL_PYTHON="$ROOT/.venv/bin/python" \
    ${ACCEL_CMAKE_ARGS:-}
fi
TARGETS=(${ACCEL_TARGETS:-all})
log "building ${TARGETS[*]}"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target "${TARGETS[@]}"
log "done: binaries in $BUILD_DIR"
