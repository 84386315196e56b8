#!/usr/bin/env bash
# Palimpsest build driver. Usage: ./build.sh [build|test|demo|sample|bench|ptx]
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
    # Skipped tests (the GPU ones without a device) are not listed one by one: their count per
    # reason is printed at the end, read from a TRX report.
    log=$(mktemp); trx=$(mktemp -d)
    set +e
    dotnet test tests/Palimpsest.Tests/Palimpsest.Tests.csproj -c Release -nologo --logger "trx;LogFileName=$trx/tests.trx" "$@" 2>&1 \
      | tee "$log" | grep --line-buffered -v -E '\[SKIP\]$|^  Skipped |^Results File: '
    rc=${PIPESTATUS[0]}
    set -e
    if [ -f "$trx/tests.trx" ]; then
      awk '/outcome="NotExecuted"/ { s = 1 } s && /<Message>/ { sub(/.*<Message>/, ""); sub(/<\/Message>.*/, ""); n[$0]++; s = 0 }
           END { for (m in n) printf "skipped %d: %s\n", n[m], m }' "$trx/tests.trx" | sort
    fi
    rm -rf "$trx"
    line=$(grep -E "Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+" "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then echo "0 passed, 1 failed, 0 skipped"; rm -f "$log"; exit 1; fi
    f=$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$line"); p=$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$line"); s=$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$line")
    rm -f "$log"
    echo "$p passed, $f failed, $s skipped"
    exit $rc ;;
  demo)
    # The committed editable fact model (trained by `palimpsest train`, see its TRAINING.md): show a
    # fact, rewrite it with ROME (journaled, in a temporary copy), check a paraphrase the model never
    # saw for this fact and an unrelated fact, revert bit-exactly. Under a minute on 2 cores.
    # Default: ROME's own example, the Eiffel Tower moved to Rome; DEMO_SUBJECT (and DEMO_TARGET)
    # pick another record of the model's requests.json.
    model="data/models/facts-d128-l5"
    ./palimpsest info "$model"
    if [ -z "${DEMO_SUBJECT:-}" ]; then
      ./palimpsest demo "$model" --subject "the Eiffel Tower" --target "Rome" "$@"
    else
      ./palimpsest demo "$model" --subject "$DEMO_SUBJECT" ${DEMO_TARGET:+--target "$DEMO_TARGET"} "$@"
    fi ;;
  sample)
    # Packs the library and its CUDA bindings into artifacts/packages, then builds samples/host against those
    # packages (not the projects) and runs it on the committed demo model: serve, edit, revert, IChatClient.
    # Each run packs a version of its own (0.1.0-local.<time>) and removes it from the NuGet cache afterwards:
    # the cache keys by version, so a package packed earlier is never restored in its place.
    prefix=$(sed -n 's:.*<VersionPrefix>\(.*\)</VersionPrefix>.*:\1:p' Directory.Build.props)
    suffix="local.$(date -u +%Y%m%d%H%M%S).$$"; version="$prefix-$suffix"
    cache=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: //')
    trap 'rm -rf "$cache/palimpsest/$version" "$cache/palimpsest.cuda.interop/$version"
          rmdir "$cache/palimpsest" "$cache/palimpsest.cuda.interop" 2>/dev/null || true' EXIT
    rm -f artifacts/packages/Palimpsest.*nupkg
    for p in managed/Palimpsest.Cuda.Interop managed/Palimpsest; do
      dotnet pack "$p" -c Release -v quiet -nologo -o artifacts/packages --version-suffix "$suffix"
    done
    ls artifacts/packages
    dotnet build samples/host -c Release -v quiet -nologo -p:PalimpsestVersion="$version"
    dotnet samples/host/bin/Release/net10.0/Host.dll "$PWD/data/models/facts-d128-l5" ;;
  bench)
    dotnet run -c Release --project bench/Palimpsest.Bench -- "$@" ;;
  ptx)
    # Compile every kernels/*.cu to PTX with clang-14 (no CUDA toolkit needed).
    bash kernels/compile-ptx.sh ;;
  *) echo "usage: ./build.sh [build|test|demo|sample|bench|ptx]" >&2; exit 2 ;;
esac
