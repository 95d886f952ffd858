#!/usr/bin/env bash
# The `format` test: every C++ source follows .clang-format. Pinned to
# clang-format 14 (Debian 12's; scripts/setup.sh installs it): other majors
# lay some lines out differently. Prints the files to fix and the command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CF="${CLANG_FORMAT:-clang-format-14}"
command -v "$CF" >/dev/null || { echo "format: $CF not found (apt-get install clang-format-14, or set CLANG_FORMAT)"; exit 1; }
cd "$ROOT"
mapfile -t files < <(find src include tests tools examples bench fuzz -type f \
  \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h.in' \) | sort)
bad=()
for f in "${files[@]}"; do
  "$CF" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "format: ${#bad[@]} of ${#files[@]} files are not formatted:"
  printf '  %s\n' "${bad[@]}"
  echo "fix: $CF -i ${bad[*]}"
  exit 1
fi
echo "format: ${#files[@]} files follow .clang-format"
