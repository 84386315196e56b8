using System.Runtime.InteropServices;
using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

// CUDA graphs: record the device work of a piece of code once, replay it with one launch. A
// decode step queues ~1,700 launches, memsets and products whose host cost (several ms) exceeds
// the GPU's time for them; a replayed graph costs one driver call.
public sealed partial class CudaBackend : IGraphCapture
{
    private CaptureState? _capture;
    private DeviceBuffer? _blasWorkspace;
    private const long BlasWorkspaceBytes = 32L << 20;

    private sealed class CaptureState(IntPtr stream)
    {
        public IntPtr Stream { get; } = stream;
        // Buffers freed inside the capture: the graph writes them, so they stay with it; later
        // allocations of the same capture may reuse them (stream order holds inside the graph).
        private readonly Dictionary<long, Stack<DeviceBuffer>> _free = new();
        public void PutFree(DeviceBuffer b)
        {
            if (!_free.TryGetValue(b.Bytes, out var s)) _free[b.Bytes] = s = new Stack<DeviceBuffer>();
            s.Push(b);
        }
        public DeviceBuffer? TakeFree(long bytes) => _free.TryGetValue(bytes, out var s) && s.Count > 0 ? s.Pop() : null;
        public List<DeviceBuffer> Held => _free.Values.SelectMany(s => s).ToList();
        public List<IntPtr> Pinned { get; } = [];       // host staging of uploads: the graph copies from them
        public HashSet<CudaTensor> Created { get; } = new(ReferenceEqualityComparer.Instance);
    }

    /// <summary>
    /// Runs <paramref name="work"/> with its device work recorded into a graph instead of executed;
    /// <see cref="CudaGraph.Launch"/> then replays it with the same arguments, addresses and
    /// uploaded values. Run the same work once uncaptured first: inside a capture every buffer must
    /// come from the backend's cache (an allocation is no stream operation), and nothing may be
    /// read back to the host. Tensors created and freed inside the capture are kept by the graph;
    /// a tensor created inside and used after it is written by every replay.
    /// </summary>
    public CudaGraph Capture(Action work)
    {
        if (_capture is not null) throw new InvalidOperationException("a capture is already under way");
        Bind();
        // Non-blocking: a capture only records, so it needs no order with earlier work (replays
        // run on the legacy stream), and a blocking stream would turn other threads' legacy-stream
        // calls during the capture into errors (CUDA_ERROR_STREAM_CAPTURE_IMPLICIT).
        CuDriver.Check(CuDriver.cuStreamCreate(out var stream, CuDriver.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        var state = new CaptureState(stream);
        IntPtr graph = IntPtr.Zero, exec = IntPtr.Zero;
        try
        {
            SetBlasStream(stream);
            _capture = state;
            // Relaxed: lookups such as cuModuleGetFunction / cuFuncSetAttribute stay legal.
            CuDriver.Check(CuDriver.cuStreamBeginCapture_v2(stream, CuDriver.CU_STREAM_CAPTURE_MODE_RELAXED), "cuStreamBeginCapture_v2");
            Exception? failed = null;
            try { work(); }
            catch (Exception e) { failed = e; }
            int end = CuDriver.cuStreamEndCapture(stream, out graph); // always end, or the stream stays capturing
            _capture = null;
            if (failed is not null) throw new InvalidOperationException($"graph capture failed: {failed.Message}", failed);
            CuDriver.Check(end, "cuStreamEndCapture");
            CuDriver.Check(CuDriver.cuGraphInstantiateWithFlags(out exec, graph, 0), "cuGraphInstantiateWithFlags");
            return new CudaGraph(this, graph, exec, state.Held, state.Pinned);
        }
        catch
        {
            _capture = null;
            if (exec != IntPtr.Zero) CuDriver.cuGraphExecDestroy(exec);
            if (graph != IntPtr.Zero) CuDriver.cuGraphDestroy(graph);
            foreach (var b in state.Held) Return(b);
            foreach (var p in state.Pinned) CuDriver.cuMemFreeHost(p);
            throw;
        }
        finally
        {
            SetBlasStream(IntPtr.Zero);
            CuDriver.cuStreamDestroy_v2(stream); // released once its captured work is gone; the graph does not use it
        }
    }

    IReplayable IGraphCapture.Record(Action work) => Capture(work);

    /// <summary>Issues t's deferred zero-fill now (a graph replay reads t without asking for it).</summary>
    public void Settle(Tensor t) => _ = C(t, "t").Ptr;

    // cuBLAS allocates its default workspace per stream, which a capture cannot record: give it one
    // of ours (cublasSetStream resets the workspace, so set it after).
    private void SetBlasStream(IntPtr stream)
    {
        Cublas.Check(Cublas.cublasSetStream_v2(_blas.Handle, stream), "cublasSetStream_v2");
        if (stream == IntPtr.Zero) return;
        _blasWorkspace ??= new DeviceBuffer(BlasWorkspaceBytes);
        Cublas.Check(Cublas.cublasSetWorkspace_v2(_blas.Handle, _blasWorkspace.Ptr, (nuint)BlasWorkspaceBytes), "cublasSetWorkspace_v2");
    }

    // An upload inside a capture copies from pinned memory owned by the graph: the values are
    // those of the capture, and pageable memory cannot be a graph's copy source.
    private unsafe void CaptureUpload<T>(ulong dst, ReadOnlySpan<T> src) where T : unmanaged
    {
        nuint bytes = (nuint)((long)src.Length * sizeof(T));
        CuDriver.Check(CuDriver.cuMemAllocHost_v2(out var pinned, bytes), $"cuMemAllocHost_v2({bytes} bytes)");
        _capture!.Pinned.Add(pinned);
        src.CopyTo(new Span<T>((void*)pinned, src.Length));
        CuDriver.Check(CuDriver.cuMemcpyHtoDAsync_v2(dst, (void*)pinned, bytes, Stream), $"cuMemcpyHtoDAsync_v2({bytes} bytes, captured)");
    }

    internal void Launch(IntPtr exec)
    {
        Bind();
        CuDriver.Check(CuDriver.cuGraphLaunch(exec, IntPtr.Zero), "cuGraphLaunch");
    }

    internal void Release(IntPtr graph, IntPtr exec, List<DeviceBuffer> held, List<IntPtr> pinned)
    {
        if (_disposed) return; // the context and everything in it went with the backend
        Bind();
        _ctx.Synchronize(); // a replay may still read the pinned staging or write the held buffers
        CuDriver.cuGraphExecDestroy(exec);
        CuDriver.cuGraphDestroy(graph);
        foreach (var b in held) Return(b);
        foreach (var p in pinned) CuDriver.cuMemFreeHost(p);
    }
}

/// <summary>A captured piece of device work (see <see cref="CudaBackend.Capture"/>); replayed on the backend's stream.</summary>
public sealed class CudaGraph : IReplayable
{
    private readonly CudaBackend _owner;
    private readonly IntPtr _graph;
    private IntPtr _exec;
    private readonly List<DeviceBuffer> _held;
    private readonly List<IntPtr> _pinned;

    internal CudaGraph(CudaBackend owner, IntPtr graph, IntPtr exec, List<DeviceBuffer> held, List<IntPtr> pinned)
    {
        _owner = owner; _graph = graph; _exec = exec; _held = held; _pinned = pinned;
    }

    /// <summary>Queues one replay (returns at once; ordered with the backend's other work).</summary>
    public void Launch()
    {
        if (_exec == IntPtr.Zero) throw new ObjectDisposedException(nameof(CudaGraph));
        _owner.Launch(_exec);
    }

    public void Dispose()
    {
        if (_exec == IntPtr.Zero) return;
        _owner.Release(_graph, _exec, _held, _pinned);
        _exec = IntPtr.Zero;
    }
}
