#!/usr/bin/env bash
# Runs HERE (with dotnet): prepares .gpu/ for bench/gpu/run.sh on the GPU machine, which has no
# .NET: self-contained linux-x64 publishes of the test project (untrimmed: xunit discovers tests
# by reflection) and of the GPU bench (trimmed), plus the kernel sources for the nvcc check and
# the scripts. Usage: bash bench/gpu/publish.sh [DEST]   (DEST defaults to .gpu, git-ignored)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST="${1:-.gpu}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
rm -rf "$DEST/tests" "$DEST/bench" "$DEST/kernels"
mkdir -p "$DEST"
dotnet publish tests/Palimpsest.Tests -c Release -r linux-x64 --self-contained true -v quiet -nologo \
  -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true \
  -o "$DEST/tests"
dotnet publish bench/gpu/Palimpsest.GpuBench -c Release -r linux-x64 --self-contained true -v quiet -nologo \
  -p:PublishTrimmed=true -p:PublishSingleFile=true -p:EnableCompressionInSingleFile=true \
  -o "$DEST/bench"
rm -f "$DEST"/tests/*.pdb "$DEST"/bench/*.pdb
mkdir -p "$DEST/kernels"
cp kernels/*.cu kernels/*.cuh "$DEST/kernels/"
cp bench/gpu/run.sh bench/gpu/peer_pytorch.py bench/gpu/combine.py "$DEST/"
du -sh "$DEST"/tests "$DEST"/bench "$DEST"
