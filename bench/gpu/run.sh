#!/usr/bin/env bash
# Device script: runs on the GPU machine from the repository root, with .gpu/ carried (made here
# by bench/gpu/publish.sh; the machine has no .NET). Steps, most important first:
#   card -> nvcc compile check of kernels/*.cu (background) -> GPU tests with REQUIRE_GPU=1 ->
#   engine benchmark -> PyTorch peer -> compute-sanitizer memcheck of the op-parity tests ->
#   one markdown table (engine vs PyTorch). Logs and the table go to $OUT (default .gpu/out).
# Budget: well under 7 minutes on an H100/H200. Usage: bash .gpu/run.sh
set -u
G=.gpu
OUT="${OUT:-$G/out}"
mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }

stamp "card"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# The test publish is a plain self-contained folder (xunit v3 cannot run single-file), packed.
if [ -f "$G/tests.tar.xz" ] && [ ! -x "$G/tests/Palimpsest.Tests" ]; then
  stamp "unpack tests"
  tar -xJf "$G/tests.tar.xz" -C "$G"
fi
# The fixtures travel with the checkout (tests/fixtures); the tests read them beside the exe.
[ -e "$G/tests/fixtures" ] || ln -s "$(pwd)/tests/fixtures" "$G/tests/fixtures"
chmod +x "$G/tests/Palimpsest.Tests" "$G/bench/Palimpsest.GpuBench" 2>/dev/null

# transformers runs only here: generate the fixtures of the architectures added since the first four
# (tests/fixtures/generate.py writes all seven into $OUT/fixtures, which comes back; the missing ones
# are also copied into tests/fixtures so that this run's tests use them). Commit them from $OUT.
missing=$(for a in llama3_scaled mistral_window qwen2_window; do [ -f "tests/fixtures/$a/reference.safetensors" ] || echo "$a"; done)
if [ -n "$missing" ]; then
  stamp "transformers fixtures: $(echo $missing)"
  timeout 120 python3 tests/fixtures/generate.py "$OUT/fixtures" > "$OUT/fixtures.log" 2>&1
  grep -E "^fixture" "$OUT/fixtures.log"
  for a in $missing; do [ -f "$OUT/fixtures/$a/reference.safetensors" ] && cp -r "$OUT/fixtures/$a" tests/fixtures/; done
fi

stamp "nvcc -arch=sm_90 compile check (background)"
( nvcc --version | tail -1
  ok=0; bad=0
  for f in "$G"/kernels/*.cu; do
    if nvcc -arch=sm_90 -O3 -Xptxas -v -c "$f" -o "/tmp/$(basename "$f" .cu).o" 2>&1; then ok=$((ok+1)); else bad=$((bad+1)); echo "NVCC FAILED: $f"; fi
  done
  echo "nvcc summary: $ok compiled, $bad failed" ) > "$OUT/nvcc.log" 2>&1 &
NVCC_PID=$!

stamp "GPU tests (REQUIRE_GPU=1, trait Category=Gpu)"
REQUIRE_GPU=1 timeout 150 "$G/tests/Palimpsest.Tests" -noColor -reporter verbose -showLiveOutput -trait "Category=Gpu" > "$OUT/tests.log" 2>&1
echo "test exit code $?"
grep -E "\[FAIL\]" -A4 "$OUT/tests.log" | head -60
grep -E "Total:" "$OUT/tests.log"

stamp "engine benchmark"
timeout 260 "$G/bench/Palimpsest.GpuBench" --out "$OUT" > "$OUT/bench.log" 2>&1
echo "bench exit code $?"
tail -30 "$OUT/bench.log"

stamp "PyTorch peer"
PYTHONUNBUFFERED=1 timeout 150 python3 "$G/peer_pytorch.py" --out "$OUT" > "$OUT/torch.log" 2>&1
echo "peer exit code $?"
tail -12 "$OUT/torch.log"

wait $NVCC_PID
stamp "nvcc"
grep -E "NVCC FAILED|nvcc summary|error" "$OUT/nvcc.log" | head -20
grep -E "bytes spill" "$OUT/nvcc.log" | grep -v " 0 bytes spill stores, 0 bytes spill loads" | head -5

stamp "compute-sanitizer memcheck (op parity tests)"
REQUIRE_GPU=1 timeout 100 compute-sanitizer --tool memcheck --leak-check no --print-limit 20 \
  "$G/tests/Palimpsest.Tests" -noColor -class Palimpsest.Tests.Gpu.CudaOpParityTests > "$OUT/sanitizer.log" 2>&1
echo "sanitizer exit code $?"
grep -E "Invalid|ERROR SUMMARY|Total:" "$OUT/sanitizer.log" | head -20

stamp "table"
python3 "$G/combine.py" "$OUT" | tee "$OUT/table.md"
echo; echo "tests: $(grep -E 'Total:' "$OUT/tests.log" | tail -1)"
echo "sanitizer: $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1) / $(grep -E 'Total:' "$OUT/sanitizer.log" | tail -1)"
stamp "done"
