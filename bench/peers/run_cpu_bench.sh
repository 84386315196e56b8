#!/usr/bin/env bash
# Runs the CPU benchmarks of bench/RESULTS-cpu.md back to back, engine and peers in one run on one
# machine, logging the load average before each part (other processes skew every number).
# Usage: bench/peers/run_cpu_bench.sh [OUT_DIR]   (default /tmp/palimpsest-bench)
# Needs: apt-get install -y python3-torch python3-onnx libopenblas0-pthread   (Debian's /usr/bin/python3)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-/tmp/palimpsest-bench}"
mkdir -p "$out"
export PALIMPSEST_ONNX_DIR="${PALIMPSEST_ONNX_DIR:-/tmp/palimpsest-peers}"
load() { echo "== $1: $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/load.txt"; }
{ date -u; lscpu | head -20; nproc; } > "$out/machine.txt"
if [ ! -f "$PALIMPSEST_ONNX_DIR/gpt2_decode.onnx" ]; then
  /usr/bin/python3 bench/peers/export_onnx.py "$PALIMPSEST_ONNX_DIR"
fi
load "engine gemm"
./build.sh bench -- --filter '*GemmBenchmarks*' '*GemmNaiveBenchmarks*' --artifacts "$out/bdn-gemm" > "$out/engine-gemm.log" 2>&1
load "torch"
# OMP_WAIT_POLICY=PASSIVE: Debian's torch spins OpenMP threads while OpenBLAS's own pthreads want
# the same 2 cores; with the default (active) policy its GPT-2 forward is ~5x slower here.
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/peers/torch_cpu.py --threads 2 > "$out/torch.txt" 2>&1
load "torch (default OpenMP wait policy)"
/usr/bin/python3 bench/peers/torch_cpu.py --threads 2 > "$out/torch-default-omp.txt" 2>&1
load "engine + onnxruntime gpt2"
./build.sh bench -- --filter '*Gpt2*' --artifacts "$out/bdn-gpt2" > "$out/engine-gpt2.log" 2>&1
load "engine and onnxruntime interleaved (versus)"
./build.sh bench -- versus 20 > "$out/versus.txt" 2>&1
load "done"
grep -h -E '^\|' "$out"/bdn-*/results/*-report-github.md || true
cat "$out/torch.txt"
tail -13 "$out/versus.txt"
