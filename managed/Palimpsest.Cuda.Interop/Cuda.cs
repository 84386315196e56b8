namespace Palimpsest.Cuda.Interop;

/// <summary>What <see cref="Cuda.Probe"/> found: a usable device, or why there is none.</summary>
public sealed record CudaProbe(bool Available, string Reason, string DeviceName, int ComputeMajor, int ComputeMinor,
    ulong TotalMemory, int Multiprocessors, int DriverVersion)
{
    /// <summary>"NVIDIA H100 80GB HBM3, sm_90, 79.2 GiB, 132 SMs, driver 13.0" or the reason.</summary>
    public override string ToString() => Available
        ? $"{DeviceName}, sm_{ComputeMajor}{ComputeMinor}, {TotalMemory / (1024.0 * 1024 * 1024):F1} GiB, {Multiprocessors} SMs, driver {DriverVersion / 1000}.{DriverVersion % 1000 / 10}"
        : Reason;
}

/// <summary>Entry point: asks once, lazily and thread-safely, whether a CUDA device is usable.</summary>
public static class Cuda
{
    private static readonly Lazy<CudaProbe> Probed = new(ProbeNow, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Device 0's description, or the reason there is none ("no CUDA device: libcuda.so.1 not
    /// found"). Never throws: a machine without CUDA is an answer, not an error.
    /// </summary>
    public static CudaProbe Probe() => Probed.Value;

    private static CudaProbe None(string reason) => new(false, "no CUDA device: " + reason, "", 0, 0, 0, 0, 0);

    private static unsafe CudaProbe ProbeNow()
    {
        try
        {
            if (!NativeLibraries.TryLoad(NativeLibraries.Cuda, out _))
                return None($"{NativeLibraries.Describe(NativeLibraries.Cuda)} not found");
            int r = CuDriver.cuInit(0);
            if (r != 0) return None($"cuInit: {CuDriver.ErrorName(r)}");
            CuDriver.cuDriverGetVersion(out int version);
            r = CuDriver.cuDeviceGetCount(out int count);
            if (r != 0) return None($"cuDeviceGetCount: {CuDriver.ErrorName(r)}");
            if (count == 0) return None("cuDeviceGetCount returned 0");
            CuDriver.Check(CuDriver.cuDeviceGet(out int dev, 0), "cuDeviceGet(0)");
            byte* name = stackalloc byte[256];
            CuDriver.Check(CuDriver.cuDeviceGetName(name, 256, dev), "cuDeviceGetName");
            CuDriver.Check(CuDriver.cuDeviceTotalMem_v2(out ulong mem, dev), "cuDeviceTotalMem_v2");
            CuDriver.Check(CuDriver.cuDeviceGetAttribute(out int major, CuDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute");
            CuDriver.Check(CuDriver.cuDeviceGetAttribute(out int minor, CuDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute");
            CuDriver.Check(CuDriver.cuDeviceGetAttribute(out int sms, CuDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev), "cuDeviceGetAttribute");
            if (!NativeLibraries.TryLoad(NativeLibraries.Cublas, out _))
                return None($"{NativeLibraries.Describe(NativeLibraries.Cublas)} not found");
            return new CudaProbe(true, "", new string((sbyte*)name), major, minor, mem, sms, version);
        }
        catch (Exception e)
        {
            // A broken installation (missing entry point, driver/library mismatch) is also "no device".
            return None($"{e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>Throws <see cref="CudaUnavailableException"/> with the probe's reason when there is no device.</summary>
    public static CudaProbe Require()
    {
        var p = Probe();
        if (!p.Available) throw new CudaUnavailableException(p.Reason);
        return p;
    }
}
