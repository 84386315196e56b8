#!/usr/bin/env bash
# Single edits (each from the unedited model, scored, undone) with ROME, MEMIT and UltraEdit on facts the model
# knows: the editable fact model (200 records) and the shared models (50 records each): at the
# subject (layer 2, as first tried) and at the prompt's last token at layer 0 (docs/study/shared/rome.json),
# where their answers are looked up and the edits do take.
# Writes docs/editing/single-edits-*.txt. Usage: bash docs/editing/single-edits.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
model=data/models/facts-d128-l5
shared="${PALIMPSEST_SHARED:-$(cd .. && pwd)/shared}"
for m in rome memit ultraedit; do
  ./palimpsest eval "$model" --dataset "$model/requests.json" --limit 200 --known-only --method "$m" \
    --hparams "$model/$m.json" --stats-corpus "$model/corpus.txt" > "docs/editing/single-edits-$m-facts-d128-l5.txt"
done
if [ -d "$shared/models/cf5k-gpt2-d256-l6" ]; then
  d256="$shared/models/cf5k-gpt2-d256-l6"; cf="$shared/datasets/counterfact/counterfact-edit.json"
  ./palimpsest eval "$d256" --dataset "$cf" --limit 50 --known-only --method rome --layers 2 \
    --hparams docs/editing/cf5k-d256-rome.json --stats-corpus "facts:$cf" > docs/editing/single-edits-rome-cf5k-d256.txt
  ./palimpsest eval "$d256" --dataset "$cf" --limit 50 --known-only --method memit --layers 1,2,3 \
    --hparams docs/editing/cf5k-d256-memit.json --stats-corpus "facts:$cf" > docs/editing/single-edits-memit-cf5k-d256.txt
  for m in cf5k-gpt2-d128-l6 cf5k-gpt2-d256-l6; do
    ./palimpsest eval "$shared/models/$m" --dataset "$cf" --limit 50 --known-only --method rome \
      --hparams docs/study/shared/rome.json --stats-corpus "facts:$cf" > "docs/editing/single-edits-rome-last-${m#cf5k-gpt2-}.txt"
  done
fi
