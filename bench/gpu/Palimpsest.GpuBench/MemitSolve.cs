using Palimpsest.Cuda.Interop;

namespace Palimpsest.GpuBench;

/// <summary>
/// The float64 linear solve at the heart of MEMIT: (K Kᵀ + C) X = R with keys K [dff, n],
/// C a symmetric positive definite [dff, dff] (here diagonal), R [dff, d]. cuBLAS Dsyrk forms
/// K Kᵀ + C, cuSOLVER Dpotrf factors it and Dpotrs solves. Column-major throughout.
/// </summary>
public static unsafe class MemitSolve
{
    /// <summary>Milliseconds of syrk + potrf + potrs (median of reps) and the solver's info code.</summary>
    public static (double Ms, int Info) Run(int dff, int keys, int rhs, int reps)
    {
        using var ctx = new CudaContext(); // the backends are gone: hold the primary context ourselves
        var k = RandomDoubles(dff * (long)keys, 11);
        var r = RandomDoubles(dff * (long)rhs, 12);
        var c = new double[(long)dff * dff];
        for (int i = 0; i < dff; i++) c[(long)i * dff + i] = keys; // C = n·I keeps the system well conditioned

        using var dK = new DeviceBuffer(k.LongLength * 8);
        using var dA = new DeviceBuffer(c.LongLength * 8);
        using var dR = new DeviceBuffer(r.LongLength * 8);
        using var dX = new DeviceBuffer(r.LongLength * 8);
        using var info = new DeviceBuffer(4);
        dK.CopyFrom<double>(k);
        dR.CopyFrom<double>(r);
        using var blas = new CublasHandle(null, false);
        using var solver = new CusolverHandle(null);
        Cusolver.Check(Cusolver.cusolverDnDpotrf_bufferSize(solver.Handle, Cublas.CUBLAS_FILL_MODE_LOWER, dff, dA.Ptr, dff, out int lwork), "cusolverDnDpotrf_bufferSize");
        using var work = new DeviceBuffer((long)Math.Max(1, lwork) * 8);

        var times = new double[reps];
        int infoHost = 0;
        using var start = new CudaEvent();
        using var end = new CudaEvent();
        for (int i = 0; i <= reps; i++) // first run is the warm-up
        {
            dA.CopyFrom<double>(c); // A = C again (potrf overwrites it); synchronous, before the start event
            CuDriver.Check(CuDriver.cuMemcpyDtoD_v2(dX.Ptr, dR.Ptr, (nuint)(r.LongLength * 8)), "cuMemcpyDtoD_v2");
            start.Record(null);
            double one = 1.0;
            Cublas.Check(Cublas.cublasDsyrk_v2(blas.Handle, Cublas.CUBLAS_FILL_MODE_LOWER, Cublas.CUBLAS_OP_N, dff, keys, &one, dK.Ptr, dff, &one, dA.Ptr, dff),
                $"cublasDsyrk_v2(n={dff}, k={keys})");
            Cusolver.Check(Cusolver.cusolverDnDpotrf(solver.Handle, Cublas.CUBLAS_FILL_MODE_LOWER, dff, dA.Ptr, dff, work.Ptr, lwork, info.Ptr), $"cusolverDnDpotrf(n={dff})");
            Cusolver.Check(Cusolver.cusolverDnDpotrs(solver.Handle, Cublas.CUBLAS_FILL_MODE_LOWER, dff, rhs, dA.Ptr, dff, dX.Ptr, dff, info.Ptr), $"cusolverDnDpotrs(n={dff}, nrhs={rhs})");
            end.Record(null);
            double ms = end.ElapsedSince(start);
            if (i > 0) times[i - 1] = ms;
            var h = new int[1];
            info.CopyTo<int>(h);
            infoHost = h[0];
        }
        Array.Sort(times);
        return (times[reps / 2], infoHost);
    }

    private static double[] RandomDoubles(long n, int seed)
    {
        var v = new double[n];
        const int chunk = 1 << 20;
        Parallel.For(0, (int)((n + chunk - 1) / chunk), b =>
        {
            var rng = new Random(seed * 1_000_003 + b);
            for (long i = (long)b * chunk; i < Math.Min(n, (long)(b + 1) * chunk); i++) v[i] = rng.NextDouble() * 2 - 1;
        });
        return v;
    }
}
