#!/usr/bin/env bash
# Study (b): one stream of CounterFact-style edits on the editable fact model, every method.
# ROME (B=1), MEMIT and AlphaEdit (B=100) come from docs/lifelong/regenerate.sh (run it first; the
# B=8 runs are its documented variant); this adds LEMoE (B=100 and B=8, 1,000 edits) and WilKE
# (B=1, 1,000 edits: 81 minutes on 2 cores, scanning all five layers per edit) and the side-by-side report.
# Usage: [PALIMPSEST=path/to/cli] bash docs/study/regenerate-b.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
model="${1:-data/models/facts-d128-l5}"
out=docs/study/lifelong
cli="${PALIMPSEST:-./palimpsest}"
[ -n "${PALIMPSEST:-}" ] || ./palimpsest --help > /dev/null
"$cli" lifelong "$model" --method lemoe --hparams "$model/lemoe.json" --dataset "$model/requests.json" \
  --edits 1000 --batch 100 --held-out 100 --report "$out/lemoe" &
"$cli" lifelong "$model" --method wilke --hparams "$model/wilke.json" --dataset "$model/requests.json" \
  --edits 1000 --held-out 100 --stats-corpus "$model/corpus.txt" --report "$out/wilke" &
wait
"$cli" lifelong-report docs/lifelong/rome docs/lifelong/memit docs/lifelong/alphaedit docs/lifelong/memit-b8 \
  docs/lifelong/alphaedit-b8 "$out/lemoe" "$out/wilke" --out "$out" \
  --title "Study (b): every method on one stream of edits ($(basename "$model"))"
