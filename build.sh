#!/usr/bin/env bash
# Palimpsest build driver. Usage: ./build.sh [build|test|demo|bench|ptx|publish-gpu]
set -euo pipefail
cd "$(dirname "$0")"
cmd="${1:-build}"; shift || true
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
SHARED="${PALIMPSEST_SHARED:-$(cd .. && pwd)/shared}"
case "$cmd" in
  build)
    dotnet build Engine.sln -c Release -v quiet -nologo "$@" ;;
  test)
    # Runs every xunit test; prints the totals alone on the last line: "N passed, N failed, N skipped".
    log=$(mktemp)
    set +e
    dotnet test tests/Palimpsest.Tests/Palimpsest.Tests.csproj -c Release -nologo "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    line=$(grep -E "Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+" "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then echo "0 passed, 1 failed, 0 skipped"; rm -f "$log"; exit 1; fi
    f=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$line"); p=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$line"); s=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$line")
    rm -f "$log"
    echo "$p passed, $f failed, $s skipped"
    exit $rc ;;
  demo)
    cli="./palimpsest"
    # The CounterFact fact model when ../shared is beside the checkout; else the committed tiny
    # fixture (vocabulary of 1000 ids, so a prompt whose GPT-2 ids are all < 1000).
    if [ -d "$SHARED/models/cf5k-gpt2-d128-l6" ]; then
      model="$SHARED/models/cf5k-gpt2-d128-l6"; prompt="The mother tongue of Danielle Darrieux is"
    else
      model="tests/fixtures/gpt2"; prompt=" the of and to"
    fi
    $cli info "$model"
    $cli predict "$model" "$prompt" --top 5
    $cli generate "$model" "$prompt" --max-tokens 8 ;;
  bench)
    dotnet run -c Release --project bench/Palimpsest.Bench -- "$@" ;;
  ptx)
    # Compile every kernels/*.cu to PTX with clang-14 (no CUDA toolkit needed).
    bash kernels/compile-ptx.sh ;;
  *) echo "usage: ./build.sh [build|test|demo|bench|ptx]" >&2; exit 2 ;;
esac
