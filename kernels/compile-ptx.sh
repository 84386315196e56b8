#!/usr/bin/env bash
# Compiles every kernels/*.cu to kernels/ptx/*.ptx with clang-14 (no CUDA toolkit needed); the
# PTX is committed and embedded in Palimpsest.dll, and the driver JIT-compiles it for the card.
# A test (KernelPtxFreshnessTests) recompiles and compares, so keep the flags in sync with it.
set -euo pipefail
cd "$(dirname "$0")"
CLANG="${CLANG:-clang-14}"
mkdir -p ptx
for src in *.cu; do
  name="${src%.cu}"
  "$CLANG" -x cuda --cuda-gpu-arch=sm_80 --cuda-device-only -nocudainc -nocudalib -O3 \
    -include clang_cuda_min.h -S "$src" -o "ptx/$name.ptx"
  echo "kernels/ptx/$name.ptx"
done
