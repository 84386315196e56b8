#!/usr/bin/env bash
# Runs HERE (with dotnet): prepares .gpu/ for bench/gpu/run.sh on the GPU machine, which has no
# .NET: self-contained linux-x64 publishes of the test project (untrimmed: xunit discovers tests
# by reflection) and of the GPU bench (trimmed), plus the kernel sources for the nvcc check and
# the scripts. Usage: bash bench/gpu/publish.sh [DEST]   (DEST defaults to .gpu, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST="${1:-.gpu}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
rm -rf "$DEST/tests" "$DEST/tests.tar.xz" "$DEST/bench" "$DEST/kernels"
mkdir -p "$DEST"
# xunit v3 finds its test assembly by path, which a single-file bundle does not have ("assembly not
# found"): publish a plain folder, drop what the in-process runner never loads (code coverage,
# localised resources, other platforms' natives; the fixtures travel with the checkout), and pack it.
dotnet publish tests/Palimpsest.Tests -c Release -r linux-x64 --self-contained true -v quiet -nologo -o "$DEST/tests"
( cd "$DEST/tests" && rm -rf fixtures alpine arm64 macos ubuntu x64 x86 cs de es fr it ja ko pl pt-BR ru tr zh-Hans zh-Hant \
    Microsoft.CodeCoverage.* Microsoft.DiaSymReader.dll Microsoft.VisualStudio.TraceDataCollector.dll \
    Microsoft.VisualStudio.CodeCoverage.Shim.dll Mono.Cecil*.dll ./*.pdb \
    libSkiaSharp.so libHarfBuzzSharp.so libmscordaccore.so libmscordbi.so )
# (the plotting natives and the debugger's: no GPU test draws or debugs, and what travels to the
# device is capped at 64 MiB, the checkout included)
tar -C "$DEST" -cf - tests | xz -T0 -9 > "$DEST/tests.tar.xz"
rm -rf "$DEST/tests"
dotnet publish bench/gpu/Palimpsest.GpuBench -c Release -r linux-x64 --self-contained true -v quiet -nologo \
  -p:PublishTrimmed=true -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true \
  -o "$DEST/bench"
rm -f "$DEST"/bench/*.pdb
mkdir -p "$DEST/kernels"
cp kernels/*.cu kernels/*.cuh "$DEST/kernels/"
cp bench/gpu/run.sh bench/gpu/peer_pytorch.py bench/gpu/combine.py "$DEST/"
du -sh "$DEST"/tests.tar.xz "$DEST"/bench "$DEST"
