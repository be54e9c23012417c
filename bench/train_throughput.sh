#!/usr/bin/env bash
# Training speed in one go, so that every ratio is measured on one machine in one sitting:
#   1. lory_bench_train of this build (dense, lory-8, lory-32; chunked and full-logits loss);
#   2. with --before DIR, the same benchmark built from an older tree (DIR is its build folder):
#      before/after tokens/s per shape and router;
#   3. the plain PyTorch-Python copy of the dense model (bench/pytorch_dense_copy.py, Debian's
#      python3-torch, fp32 and CPU autocast bf16): lory dense / PyTorch dense per shape.
# Usage: bench/train_throughput.sh [--build DIR] [--before DIR] [--steps N] [--threads N]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build" before="" steps=5 threads=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --before) before="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) echo "usage: bench/train_throughput.sh [--build DIR] [--before DIR] [--steps N] [--threads N]" >&2; exit 2 ;;
  esac
done
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== lory (this build: $build)"
"$build/lory_bench_train" --steps "$steps" --threads "$threads" | tee "$out/after.txt"
if [ -n "$before" ]; then
  echo; echo "== lory before (the build in $before)"
  "$before/lory_bench_train" --steps "$steps" --threads "$threads" | tee "$out/before.txt"
fi
echo; echo "== PyTorch-Python copy of the dense model"
/usr/bin/python3 "$root/bench/pytorch_dense_copy.py" --steps "$steps" --threads "$threads" --bf16 | tee "$out/pytorch.txt"

# Rows of lory_bench_train: the shape is the first 22 columns, then router, tokens/s (chunked), ...
rows() { awk 'length($0) > 30 && $0 ~ /x +[0-9.]+ +[0-9]+%/ { print substr($0, 1, 22) "|" $0 }' "$1" |
         while IFS='|' read -r shape line; do
           set -- ${line:22}; echo "$(echo "$shape" | sed 's/ *$//')|$1|$2"
         done; }
echo; echo "== ratios (tokens/s)"
if [ -n "$before" ]; then
  join -t'#' <(rows "$out/after.txt" | awk -F'|' '{print $1 " " $2 "#" $3}' | sort) \
             <(rows "$out/before.txt" | awk -F'|' '{print $1 " " $2 "#" $3}' | sort) |
    awk -F'#' '{ printf "after / before  %-32s %8.0f / %8.0f = %.2fx\n", $1, $2, $3, $2 / $3 }'
fi
while read -r line; do
  shape=$(echo "$line" | sed -E 's/^pytorch-python (.*) fp32 .*/\1/; s/ *$//')
  fp32=$(echo "$line" | sed -E 's/.* fp32 +([0-9]+) tokens.*/\1/')
  bf16=$(echo "$line" | sed -E 's/.*bf16 +([0-9]+) tokens.*/\1/')
  lory=$(rows "$out/after.txt" | awk -F'|' -v s="$shape" '$1 == s && $2 == "dense" { print $3 }')
  [ -n "$lory" ] || continue
  awk -v s="$shape" -v l="$lory" -v f="$fp32" -v b="$bf16" 'BEGIN {
    printf "lory dense / PyTorch dense fp32  %-22s %8.0f / %8.0f = %.2fx   (PyTorch autocast bf16: %.0f, %.2fx its fp32)\n",
           s, l, f, l / f, b, b / f }'
done < <(grep '^pytorch-python' "$out/pytorch.txt")
