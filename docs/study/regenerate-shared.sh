#!/usr/bin/env bash
# Study (b) on the two shared fact models (../shared/models/cf5k-gpt2-d128-l6 and -d256-l6): the
# same stream of CounterFact edits (records 0-1,023 of counterfact-edit.json, all among the 5,000
# the models were trained on; records 1,024-1,123 held out for ORS) with ROME (B = 1), MEMIT and
# AlphaEdit (B = 8) and LEMoE (B = 100), then one side-by-side report per model. Hyper-parameters:
# docs/study/shared/*.json (the editable model's, layer 0 at the prompt's last token, with the
# v* loss read at these models' last layer, 5). WilKE's scan costs six ROME edits per edit on these
# six-layer models (98 and 120 minutes on the 2 cores, 2026-11-27); WILKE_EDITS (default EDITS) shortens it.
# Each run saves its report at every checkpoint, so a stopped run leaves a partial one; every run
# also saves its state, and a run whose folder holds one (state/state.json)
# is resumed (--resume) instead of started over: a killed regeneration goes on where it stopped.
# Usage: [PALIMPSEST=path/to/cli] [JOBS=N] [EDITS=1024] [SHARED=../shared] [ONLY=regex] bash docs/study/regenerate-shared.sh
# JOBS runs side by side (default 2); on 2 cores the twelve runs take most of a day.
set -euo pipefail
cd "$(dirname "$0")/../.."
shared="${SHARED:-../shared}"
edits="${EDITS:-1024}"
data="$shared/datasets/counterfact/counterfact-edit.json"
hp=docs/study/shared
out=docs/study/lifelong-shared
cli="${PALIMPSEST:-./palimpsest}"
[ -n "${PALIMPSEST:-}" ] || ./palimpsest --help > /dev/null
runs=()
for method in "rome 1" "memit 8" "alphaedit 8" "lemoe 100"; do
  for model in cf5k-gpt2-d128-l6 cf5k-gpt2-d256-l6; do runs+=("$model $method $edits"); done
done
for model in cf5k-gpt2-d128-l6 cf5k-gpt2-d256-l6; do runs+=("$model wilke 1 ${WILKE_EDITS:-$edits}"); done
# LEMoE with 400 AdamW steps per expert instead of 100 (lemoe-400.json): with 100 the first expert
# holds only 37 % of its 100 edits on d128
for model in cf5k-gpt2-d128-l6 cf5k-gpt2-d256-l6; do runs+=("$model lemoe 100 $edits 400"); done
# ONLY (an extended regex over "model method batch ...") keeps the matching runs, e.g.
# ONLY='d128-l6 wilke' to finish (resume) that run alone; the reports are then regenerated
if [ -n "${ONLY:-}" ]; then
  kept=(); for r in "${runs[@]}"; do [[ "$r" =~ $ONLY ]] && kept+=("$r"); done
  [ ${#kept[@]} -gt 0 ] || { echo "ONLY='$ONLY' matches none of the runs" >&2; exit 2; }
  runs=("${kept[@]}")
fi
one() {
  set -- $1
  local model=$1 method=$2 batch=$3 n=$4 steps=${5:-} stats=()
  local hpfile="$hp/$method${steps:+-$steps}.json" name="$method-b$batch${steps:+-s$steps}"
  local resume=()
  [ "$method" = lemoe ] || stats=(--stats-corpus "facts:$data")
  # a saved state: go on from it (the log goes on too); otherwise start over
  if [ -f "$out/$model/$name/state/state.json" ]; then resume=(--resume); else : > "$out/$model/$name.log"; fi
  "$cli" lifelong "$shared/models/$model" --method "$method" --batch "$batch" --hparams "$hpfile" \
    --dataset "$data" --edits "$n" --held-out 100 "${stats[@]}" --report "$out/$model/$name" "${resume[@]}" \
    >> "$out/$model/$name.log" 2>&1
}
export -f one; export cli shared data hp out
mkdir -p "$out/cf5k-gpt2-d128-l6" "$out/cf5k-gpt2-d256-l6"
printf '%s\n' "${runs[@]}" | xargs -P "${JOBS:-2}" -I{} bash -c 'one "$@"' _ {}
for model in cf5k-gpt2-d128-l6 cf5k-gpt2-d256-l6; do
  extra=(); [ -d "$out/$model/lemoe-b100-s400" ] && extra=("$out/$model/lemoe-b100-s400")
  "$cli" lifelong-report "$out/$model/rome-b1" "$out/$model/memit-b8" "$out/$model/alphaedit-b8" "$out/$model/lemoe-b100" "${extra[@]}" "$out/$model/wilke-b1" \
    --out "$out/$model" --title "Study (b) on $model: $edits edits, never restored"
done
