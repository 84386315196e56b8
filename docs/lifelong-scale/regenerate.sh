#!/usr/bin/env bash
# Lifelong editing at scale on the two shared fact models (issue 15, docs/lifelong-scale/README.md).
#   1,024 edits (CounterFact records 0-1,023, records 1,024-1,123 held out, as study (b)):
#     UltraEdit (B = 8) and ROME / MEMIT / AlphaEdit with norm anchors (hparams/*-nas.json); the
#     runs without anchors are study (b)'s, in docs/study/lifelong-shared (reused, not rerun)
#   the full stream: every record among 0-4,999 (what the models were trained on) that the unedited
#     model answers, the last 100 of them held out (--records 5000 --known-only --edits all):
#     UltraEdit and MEMIT (B = 8, the best locate-and-edit method of study (b))
# Every run saves its state as it goes; a run whose folder holds one is resumed (--resume), so a
# regeneration cut off by the end of a session goes on where it stopped. Locate-and-edit costs about
# 1 s per edit on d128 and 4-5 s on d256 on the 2 cores, so the full MEMIT streams take hours.
# Usage: [PALIMPSEST=path/to/cli] [JOBS=N] [SHARED=../shared] [ONLY=regex] bash docs/lifelong-scale/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
shared="${SHARED:-../shared}"
data="$shared/datasets/counterfact/counterfact-edit.json"
hp=docs/lifelong-scale/hparams
out=docs/lifelong-scale
cli="${PALIMPSEST:-./palimpsest}"
[ -n "${PALIMPSEST:-}" ] || ./palimpsest --help > /dev/null
runs=()
for model in cf5k-gpt2-d128-l6 cf5k-gpt2-d256-l6; do
  runs+=("$model ultraedit 8 $hp/$model/ultraedit.json ultraedit-b8 1024")
  runs+=("$model memit 8 $hp/memit-nas.json memit-nas-b8 1024")
  runs+=("$model alphaedit 8 $hp/alphaedit-nas.json alphaedit-nas-b8 1024")
  runs+=("$model rome 1 $hp/rome-nas.json rome-nas-b1 1024")
  runs+=("$model ultraedit 8 $hp/$model/ultraedit.json ultraedit-b8-full all")
  runs+=("$model memit 8 docs/study/shared/memit.json memit-b8-full all")
done
if [ -n "${ONLY:-}" ]; then
  kept=(); for r in "${runs[@]}"; do [[ "$r" =~ $ONLY ]] && kept+=("$r"); done
  [ ${#kept[@]} -gt 0 ] || { echo "ONLY='$ONLY' matches none of the runs" >&2; exit 2; }
  runs=("${kept[@]}")
fi
one() {
  set -- $1
  local model=$1 method=$2 batch=$3 hpfile=$4 name=$5 n=$6 stats=() stream=() resume=()
  [ "$method" = ultraedit ] || stats=(--stats-corpus "facts:$data")
  if [ "$n" = all ]; then stream=(--records 5000 --known-only --edits all); else stream=(--edits "$n"); fi
  if [ -f "$out/$model/$name/state/state.json" ]; then resume=(--resume); fi
  mkdir -p "$out/$model"
  "$cli" lifelong "$shared/models/$model" --method "$method" --batch "$batch" --hparams "$hpfile" \
    --dataset "$data" "${stream[@]}" --held-out 100 "${stats[@]}" --report "$out/$model/$name" "${resume[@]}" \
    >> "$out/$model/$name.log" 2>&1
}
export -f one; export cli shared data hp out
printf '%s\n' "${runs[@]}" | xargs -P "${JOBS:-2}" -I{} bash -c 'one "$@"' _ {}
study=docs/study/lifelong-shared
for model in cf5k-gpt2-d128-l6 cf5k-gpt2-d256-l6; do
  m="$out/$model"
  "$cli" lifelong-report "$m/ultraedit-b8" "$study/$model/rome-b1" "$m/rome-nas-b1" "$study/$model/memit-b8" "$m/memit-nas-b8" \
    "$study/$model/alphaedit-b8" "$m/alphaedit-nas-b8" --out "$m/1024" --title "1,024 edits on $model, never restored: UltraEdit, and ROME / MEMIT / AlphaEdit without and with norm anchors"
  "$cli" lifelong-report "$m/ultraedit-b8-full" "$m/memit-b8-full" --out "$m/full" --title "The full stream on $model: every fact it knows of CounterFact records 0-4,999, never restored"
done
