#!/usr/bin/env bash
# Regenerates docs/lifelong: 1,000 edits (records 0..999 of the editable fact model's requests.json)
# with ROME (batch 1), MEMIT (batch 100) and AlphaEdit (batch 100), 100 held-out facts for ORS, then
# the comparison report (table + one PNG per metric). About an hour on 2 CPU cores.
# Usage: [EDITS=1000] [PALIMPSEST=path/to/cli] bash docs/lifelong/regenerate.sh [MODEL_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
model="${1:-data/models/facts-d128-l5}"
out=docs/lifelong
edits="${EDITS:-1000}"
# build once before the three runs start side by side (./palimpsest rebuilds on first use)
cli="${PALIMPSEST:-./palimpsest}"
[ -n "${PALIMPSEST:-}" ] || ./palimpsest --help > /dev/null
for spec in "rome 1" "memit 100" "alphaedit 100"; do
  set -- $spec
  "$cli" lifelong "$model" --method "$1" --batch "$2" --hparams "$model/$1.json" \
    --dataset "$model/requests.json" --edits "$edits" --held-out 100 \
    --stats-corpus "$model/corpus.txt" --report "$out/$1" &
done
wait
"$cli" lifelong-report "$out/rome" "$out/memit" "$out/alphaedit" --out "$out" \
  --title "Lifelong editing of $(basename "$model"): $edits edits, never restored"
