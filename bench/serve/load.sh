#!/usr/bin/env bash
# Load benchmark of `palimpsest serve` on the committed demo model: wrk at a steady offered rate
# (CONNS connections, one request each every PACE_MS), for SECONDS, without and then with a
# concurrent ROME edit (or revert) every second. Prints wrk's latency percentiles and, from the
# server's own /metrics, tokens, gen-0 collections per token and the gap between two tokens of a
# stream. Usage: [EDIT_PRIORITY=idle|low|normal] [CONNS=2] [PACE_MS=100] bash bench/serve/load.sh [SECONDS]
# (run on an idle machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-30}; conns=${CONNS:-2}; export PACE_MS=${PACE_MS:-100}; priority=${EDIT_PRIORITY:-idle}
work=$(mktemp -d); trap 'kill $srv 2>/dev/null && wait $srv 2>/dev/null; rm -rf "$work"' EXIT
openssl rand -hex 16 > "$work/token"
dotnet build managed/Palimpsest.Cli -c Release -v quiet -nologo > /dev/null
cli=managed/Palimpsest.Cli/bin/Release/net10.0/Palimpsest.Cli.dll
dotnet "$cli" serve data/models/facts-d128-l5 --out "$work/served" --port 0 --token-file "$work/token" --cache "$work/keystats" --edit-priority "$priority" > "$work/out" 2> "$work/log" &
srv=$!
for _ in $(seq 100); do grep -q "serving" "$work/out" 2>/dev/null && break; sleep 0.2; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/out")
auth="Authorization: Bearer $(cat "$work/token")"
# the edit client parses the id in bash, not a python3 start per edit: ~25 ms of CPU at normal priority each
# second would be the harness competing with the server it measures; it also runs at nice 19
edit() {
  local r; r=$(curl -s -H "$auth" "$url/v1/edits" -d "{\"subject\":\"$1\",\"prompt\":\"$2\",\"target_new\":\"$3\"}")
  [[ $r == '{"id":'* ]] || { echo "edit refused: $r" >&2; return 1; }
  r=${r#'{"id":'}; echo "${r%%,*}"
}
# warm-up: the key statistics, ROME's templates and the JIT, then 5 s of traffic
id=$(edit "Ivo Brennan" "{} plays the" "flute"); curl -s -X DELETE -H "$auth" "$url/v1/edits/$id" > /dev/null
wrk -t1 -c"$conns" -d5s -s bench/serve/completion.lua "$url" > /dev/null
echo "load $(cut -d' ' -f1-3 /proc/loadavg) before; --edit-priority $priority; $conns connections, one request each per ${PACE_MS} ms, ${secs} s, 16 greedy tokens per request"
run() {
  curl -s "$url/metrics" > "$work/m0"
  wrk -t1 -c"$conns" -d"${secs}s" -s bench/serve/completion.lua "$url" | grep -E '^LAT|Requests/sec'
  curl -s "$url/metrics" > "$work/m1"
  python3 bench/serve/metrics.py "$work/m0" "$work/m1"
}
echo "== without edits"; run
echo "== with an edit or revert every second (after 20 s of the same, unmeasured: the JIT's tiering of the edit path runs at normal priority)"
( subjects=("Ivo Brennan|{} plays the|flute" "Clara Marlowe|{} competes in|basketball"); i=0; last=""
  while true; do
    if [ -n "$last" ]; then curl -s -X DELETE -H "$auth" "$url/v1/edits/$last" > /dev/null; last=""
    else IFS='|' read -r s p t <<< "${subjects[$((i % 2))]}"; last=$(edit "$s" "$p" "$t"); i=$((i + 1)); fi
    sleep 1
  done ) & editor=$!
renice -n 19 -p $editor > /dev/null
wrk -t1 -c"$conns" -d20s -s bench/serve/completion.lua "$url" > /dev/null
run
kill $editor 2>/dev/null || true; wait $editor 2>/dev/null || true
echo "edits applied/reverted during the run: $(grep -c 'applied\|reverted' "$work/log") log lines; other log lines: $(grep -v 'applied\|reverted' "$work/log" | head -5)"
echo "load $(cut -d' ' -f1-3 /proc/loadavg) after"
