#!/usr/bin/env bash
# The tree's C++ as .clang-format says (clang-format 14, Debian 12's): every tracked .cpp and .h
# file, checked without changing it. A file that is not formatted is named with its first
# differences; `scripts/format` rewrites them.
set -euo pipefail
source_dir="$1"
cd "$source_dir"
clang_format=$(command -v clang-format-14 || true)
if [ -z "$clang_format" ]; then
  echo "clang-format-14 is not installed (scripts/setup-deps installs it)"
  exit 1
fi
mapfile -t files < <(git ls-files '*.cpp' '*.h')
if [ ${#files[@]} -eq 0 ]; then
  echo "no C++ files tracked by git under $source_dir"
  exit 1
fi
if ! "$clang_format" --dry-run -Werror --ferror-limit=3 "${files[@]}"; then
  echo "some files are not formatted as .clang-format says: run scripts/format"
  exit 1
fi
echo "${#files[@]} files formatted as .clang-format says"
