namespace Palimpsest.Backends.Cpu;

/// <summary>One index of a parallel loop; implemented by reusable job objects so that a loop allocates nothing.</summary>
internal interface IParallelJob
{
    void Run(int index);
}

/// <summary>
/// A fork-join loop over a fixed set of threads owned by one <see cref="SimdBackend"/>: the caller
/// and the workers pull indices from a shared counter until the loop is done. Unlike Parallel.For it
/// allocates nothing per loop, and waking parked threads costs less than scheduling pool tasks —
/// a decode step runs ~90 small parallel loops. A loop started while another is running (nested, or
/// from another thread) runs inline on its caller.
/// </summary>
internal sealed class SimdWorkers : IDisposable
{
    private readonly Thread[] _threads;
    private readonly SemaphoreSlim _start = new(0);
    private readonly ManualResetEventSlim _done = new(false);
    private IParallelJob? _job;
    private int _count, _next, _running, _busy;
    private Exception? _error;
    private volatile bool _stop;

    /// <param name="threads">Total threads of a loop, the caller included (extra threads = threads − 1).</param>
    public SimdWorkers(int threads)
    {
        _threads = new Thread[Math.Max(0, threads - 1)];
        for (int i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"palimpsest-simd-{i + 1}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads a loop runs on, the caller included.</summary>
    public int Threads => _threads.Length + 1;

    /// <summary>Runs job.Run(i) for i in [0, count), in any order and on any of the threads; rethrows a job's exception.</summary>
    public void For(int count, IParallelJob job)
    {
        // A flag, not a Monitor: a Monitor is re-entrant, and a nested loop on the calling thread
        // would then reset the fields of the loop it runs inside.
        if (count <= 1 || _threads.Length == 0 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int i = 0; i < count; i++) job.Run(i);
            return;
        }
        try
        {
            _job = job; _count = count; _next = 0; _error = null;
            int helpers = Math.Min(_threads.Length, count - 1);
            _running = helpers;
            _done.Reset();
            _start.Release(helpers); // a full fence: the workers see the fields above
            Drain();
            _done.Wait();
            _job = null;
            if (_error is { } e) throw new AggregateException(e);
        }
        finally { Volatile.Write(ref _busy, 0); }
    }

    private void Drain()
    {
        var job = _job!;
        int i;
        while ((i = Interlocked.Increment(ref _next) - 1) < _count)
        {
            try { job.Run(i); }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
                Interlocked.Exchange(ref _next, _count); // stop handing out indices
            }
        }
    }

    private void Work()
    {
        while (true)
        {
            _start.Wait();
            if (_stop) return;
            Drain();
            if (Interlocked.Decrement(ref _running) == 0) _done.Set();
        }
    }

    public void Dispose()
    {
        if (_stop) return;
        _stop = true;
        if (_threads.Length > 0) _start.Release(_threads.Length);
        foreach (var t in _threads) t.Join();
        _start.Dispose();
        _done.Dispose();
    }
}
