#!/usr/bin/env python3
"""PyTorch CPU peer for bench/Palimpsest.Bench: sgemm at the engine's sizes and a GPT-2-small
forward (1x128 prefill, 1-token decode with a 128-token KV cache), 2 threads, median of timed
repeats after warm-up. Run with Debian's /usr/bin/python3 (python3-torch, libopenblas0-pthread):
    /usr/bin/python3 bench/peers/torch_cpu.py [--threads 2] [--quick]
Prints one line per measurement: name, median ms, GFLOP/s where it applies."""
import argparse, os, statistics, sys, time
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import make_gpt2_small  # noqa: E402

GEMM = ["128x128x128", "256x256x256", "512x512x512", "1024x1024x1024", "2048x2048x2048",
        "128x3072x768", "128x768x3072", "1x3072x768", "1x768x3072", "1x50257x768t"]


def median_ms(fn, min_time=1.0, min_reps=5, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while len(times) < min_reps or time.perf_counter() < t_end:
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
        if len(times) >= 2000:
            break
    return statistics.median(times) * 1e3, min(times) * 1e3, len(times)


def gemm(spec):
    trans_b = spec.endswith("t")
    m, n, k = (int(v) for v in spec.rstrip("t").split("x"))
    g = torch.Generator().manual_seed(1)
    a = torch.rand(m, k, generator=g) - 0.5
    b = (torch.rand(n, k, generator=g) - 0.5) if trans_b else (torch.rand(k, n, generator=g) - 0.5)
    bb = b.t() if trans_b else b
    c = torch.empty(m, n)
    ms, best, reps = median_ms(lambda: torch.mm(a, bb, out=c))
    return ms, best, 2.0 * m * n * k / (ms * 1e-3) / 1e9, 2.0 * m * n * k / (best * 1e-3) / 1e9, reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-gpt2", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"blas: {torch.__config__.show().split('BLAS_INFO=')[1].split(',')[0]}")
    with torch.inference_mode():
        for spec in GEMM:
            ms, best, gf, gfb, reps = gemm(spec)
            print(f"sgemm {spec:>16}: median {ms:10.4f} ms {gf:7.1f} GFLOP/s | min {best:10.4f} ms {gfb:7.1f} GFLOP/s ({reps} reps)")
        if args.skip_gpt2:
            return
        model = make_gpt2_small()
        ids = torch.randint(0, 50257, (1, 128), generator=torch.Generator().manual_seed(2))
        pk, pv = model.empty_past()
        ms, best, reps = median_ms(lambda: model(ids, pk, pv), min_time=5.0)
        print(f"gpt2-small prefill 1x128 (all logits): median {ms:10.3f} ms | min {best:10.3f} ms ({reps} reps)")
        _, k128, v128 = model(ids, pk, pv)
        nxt = torch.tensor([[17]])
        ms, best, reps = median_ms(lambda: model(nxt, k128, v128), min_time=5.0)
        print(f"gpt2-small decode 1 token at past 128: median {ms:10.3f} ms | min {best:10.3f} ms ({reps} reps)")


if __name__ == "__main__":
    main()
