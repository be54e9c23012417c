#!/usr/bin/env bash
# CI check of the plugin SDK, exactly as a researcher would use it: install lory into a temporary
# prefix, build the two example routers of examples/routers against the installed CMake package
# (outside the source tree), build the in-tree similarity batcher the same way, check them with the installed test helpers (examples/check_router),
# load them through LORY_PLUGIN_PATH, and train a few steps of each.
# Usage: run_sdk_examples.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
launcher=()
if command -v ccache > /dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
for example in routers/smear routers/multihead_lory routers/hash check_router; do
  name=$(basename "$example")
  if ! { cmake -S "$source/examples/$example" -B "$work/build-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release \
           -DCMAKE_PREFIX_PATH="$work/prefix" "${launcher[@]}" && cmake --build "$work/build-$name"; } \
         > "$work/$name.log" 2>&1; then
    echo "building the $example example against the installed SDK failed:"
    cat "$work/$name.log"
    exit 1
  fi
done
# An in-tree plugin from the installed SDK alone (no harness-internal header): the similarity batcher.
if ! { cmake -S "$source/tests/sdk/in_tree_similarity" -B "$work/build-similarity" -G Ninja -DCMAKE_BUILD_TYPE=Release \
         -DCMAKE_PREFIX_PATH="$work/prefix" -DLORY_SOURCE_DIR="$source" "${launcher[@]}" &&
       cmake --build "$work/build-similarity"; } > "$work/similarity.log" 2>&1; then
  echo "building the in-tree similarity batcher against the installed SDK failed:"
  cat "$work/similarity.log"
  exit 1
fi
test -f "$work/build-similarity/lory_batcher_similarity.so"
# The installed SDK holds only what plugins include: no harness-internal header.
for internal in corpus_writer.h instance_stream.h allocator_tuning.h; do
  if [ -n "$(find "$work/prefix/include/lory" -name "$internal")" ]; then
    echo "the SDK installs the harness-internal header lory/$internal"
    exit 1
  fi
done
# The installed test helpers on the two routers: SMEAR is not causal (documented), multi-head Lory is
# (segments of 4 tokens, so that the 12-token sequences of the check hold three segments).
"$work/build-check_router/check_router" "$work/build-smear" smear not-causal
"$work/build-check_router/check_router" "$work/build-multihead_lory" multihead_lory causal segment_length=4
"$work/build-check_router/check_router" "$work/build-hash" hash causal experts=4
"$work/build-check_router/check_router" "$work/build-hash" hash causal experts=4 key=position
# The in-tree routers (found in the installed plugin folder) pass the same installed check (lory with
# a causal first-segment rule: the paper's rule leaks within segment 1 and stops its gradient, as documented).
check="$work/prefix/bin/lory-check-router"  # installed with the SDK
"$check" "$work/build-hash" dense causal
"$check" "$work/build-hash" lory causal experts=4 segment_length=4 first_segment=first_token
"$check" "$work/build-hash" topk causal experts=4 k=2
"$check" "$work/build-hash" topk causal experts=4 k=2 shared_experts=1 bias_update_rate=0.01
"$check" "$work/build-hash" expert_choice not-causal experts=4
export LORY_PLUGIN_PATH="$work/build-smear:$work/build-multihead_lory"
lory="$work/prefix/bin/lory"
"$lory" plugins --describe smear | grep -q "router_init_std"
"$lory" plugins --describe multihead_lory | grep -q "heads"
# Both report the LibTorch they were built against (multihead_lory includes lory/core/plugin.h first).
for router in smear multihead_lory; do
  if ! "$lory" plugins --describe "$router" | grep -q "LibTorch [0-9]"; then
    echo "$router does not report its LibTorch version:"
    "$lory" plugins --describe "$router"
    exit 1
  fi
done

# A tiny corpus, written and prepared with the installed lory-data.
for domain in alpha beta; do
  for i in $(seq 1 30); do
    printf '{"id": "%s/%d", "domain": "%s", "text": "%s document %d: %s"}\n' "$domain" "$i" "$domain" "$domain" "$i" \
      "$(for w in $(seq 1 40); do printf '%s%d ' "$domain" $((w * i % 17)); done)"
  done
done > "$work/docs.jsonl"
"$work/prefix/bin/lory-data" prepare --out "$work/corpus" --jsonl "$work/docs.jsonl" --tokenizer byte > /dev/null

# The hash router comes from the experiment's own plugin path, so that the commands that read its
# run afterwards (score, generate, export) must find it there too.
cat > "$work/sdk.toml" <<TOML
[experiment]
name = "sdk-examples"
[plugins]
path = ["build-hash"]
[data]
corpus = "corpus"
[model]
context_length = 32
[model.transformer]
d_model = 32
n_layers = 2
n_heads = 2
[router.smear]
experts = 4
[router.hash]
experts = 4
[router.multihead_lory]
experts = 4
heads = 2
segment_length = 8
[trainer]
steps = 6
batch_size = 4
log_every = 2
dense_warmup_fraction = 0.3
[eval]
every = 6
tokens_per_domain = 64
[[grid.cells]]
router.plugin = "smear"
[[grid.cells]]
router.plugin = "multihead_lory"
[[grid.cells]]
router.plugin = "lory"
[[grid.cells]]
router.plugin = "hash"
TOML
"$lory" run "$work/sdk.toml" --db "$work/results.sqlite"
done=$("$lory" query "SELECT count(*) AS n FROM runs WHERE status = 'done' AND last_step = 6" --db "$work/results.sqlite" --csv | tail -n 1)
upcycled=$("$lory" query "SELECT count(*) FROM run_attributes WHERE name = 'upcycle_step'" --db "$work/results.sqlite" --csv | tail -n 1)
if [ "$done" != "4" ] || [ "$upcycled" != "4" ]; then
  echo "expected 4 runs done and upcycled, got $done done, $upcycled upcycled"
  exit 1
fi
# The out-of-tree hash router's run is scored, generated from and exported like an in-tree one.
hash_run=$("$lory" query "SELECT id FROM runs WHERE label LIKE '%hash%'" --db "$work/results.sqlite" --csv | tail -n 1)
printf '104 101 108 108 111 32 119 111 114 108 100\n' > "$work/ids.txt"
"$lory" score "$hash_run" --db "$work/results.sqlite" --token-ids "$work/ids.txt" > "$work/score.txt"
tail -n 1 "$work/score.txt" | grep -q "tokens scored"
"$lory" generate "$hash_run" --db "$work/results.sqlite" --prompt "alpha document" --max-tokens 4 --temperature 0 > "$work/generated.txt"
"$lory" export "$hash_run" --db "$work/results.sqlite" --out "$work/hash-export" > /dev/null
grep -rqE '"router": ?"hash"' "$work/hash-export"
# ... and rebuilt in PyTorch by the export loader with the plugin's own rebuild function: the same
# log-probs as `lory score` (whose lines are position, token, logprob, text; the loader's the first three).
/usr/bin/python3 "$source/python/lory_export.py" "$work/hash-export" --token-ids "$work/ids.txt" \
  --router-module "$source/examples/routers/hash/hash_export.py" > "$work/rebuilt.txt"
if ! paste <(grep -v '^#' "$work/score.txt" | tail -n +2) "$work/rebuilt.txt" |
     awk -F'\t' '{ d = $3 - $7; if (d < 0) d = -d; if (d > 1e-4 || $2 != $6) bad = 1; n++ } END { exit (bad || n == 0) }'; then
  echo "the rebuilt hash model's log-probs differ from lory score's:"
  paste "$work/score.txt" "$work/rebuilt.txt"
  exit 1
fi
echo "SDK examples built against the installed package and trained: smear, multihead_lory, hash"
