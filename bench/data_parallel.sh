#!/usr/bin/env bash
# Data-parallel training throughput on this machine: the quickstart's dense model (d_model 128,
# 4 layers, context 256, global batch 16) for 40 steps with 1 and with 2 ranks (Gloo on
# localhost), in one run; prints tokens/s of each and the all-reduce time per step.
# Usage: bench/data_parallel.sh [BUILD_DIR]   (needs the sample corpus: scripts/quickstart prepares it)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
corpus="$root/results/corpora/sample"
[ -f "$corpus/manifest.json" ] || { echo "prepare the sample corpus first (scripts/quickstart)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/dp.toml" <<TOML
[experiment]
name = "bench-dp"
[data]
corpus = "$corpus"
[model]
context_length = 256
[model.transformer]
d_model = 128
n_layers = 4
n_heads = 4
[router]
plugin = "dense"
[trainer]
steps = 40
batch_size = 16
log_every = 10
threads = 1
[eval]
every = 0
tokens_per_domain = 256
routing_stats = false
TOML
for ranks in 1 2; do
  "$build/lory" run "$work/dp.toml" --db "$work/r$ranks.sqlite" --nproc-per-node "$ranks" > "$work/log$ranks" 2>&1 || { cat "$work/log$ranks"; exit 1; }
  # Skip the first logged interval (start-up).
  tps=$("$build/lory" query "SELECT round(avg(value)) FROM metrics WHERE name = 'train/tokens_per_s' AND step > 10" \
          --db "$work/r$ranks.sqlite" --csv | tail -n 1)
  allreduce=$("$build/lory" query "SELECT round(1000 * avg(value), 1) FROM metrics WHERE name = 'train/allreduce_s' AND step > 10" \
          --db "$work/r$ranks.sqlite" --csv | tail -n 1)
  echo "$ranks rank(s): ${tps} tokens/s${allreduce:+, all-reduce ${allreduce} ms per step}"
done
