using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Palimpsest.Hosting;

/// <summary>
/// A thread of its own that runs queued work in order. A live model has one per decoding stream
/// (a completion never waits for a pool thread that blocking work holds) and one writer for edits,
/// reverts and forecasts, which it serialises and which on Linux runs at the lowest CPU priority
/// (nice 19), so that decoding preempts an edit's computation instead of sharing the cores with it.
/// A backend instance with one thread runs its ops on the thread that calls it: this one.
/// </summary>
internal sealed partial class WorkThread : IDisposable
{
    private readonly BlockingCollection<Action> _work = new();
    private readonly Thread _thread;
    private readonly bool _lowPriority;

    public WorkThread(string name, bool lowPriority)
    {
        _lowPriority = lowPriority;
        _thread = new Thread(Loop) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Whether the thread runs at nice 19 (false where the OS refused or is not Linux).</summary>
    public bool Lowered { get; private set; }

    /// <summary>Runs <paramref name="work"/> on this thread after what is queued before it and waits; its exception is rethrown here.</summary>
    public T Run<T>(Func<T> work) => RunAsync(work).GetAwaiter().GetResult();

    /// <summary>Queues <paramref name="work"/> on this thread; the task ends with its result or exception (no pool thread waits for it).</summary>
    public Task<T> RunAsync<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try { done.SetResult(work()); }
            catch (Exception e) { done.SetException(e); }
        });
        return done.Task;
    }

    private void Loop()
    {
        if (_lowPriority && OperatingSystem.IsLinux())
        {
            // nice 19 on this thread only (Linux threads are tasks). Not SCHED_IDLE: under a full load
            // that starves an edit for as long as the load lasts (measured no better at p99 either)
            try { Lowered = setpriority(0, gettid(), 19) == 0; }
            catch (EntryPointNotFoundException) { Lowered = false; }
        }
        foreach (var a in _work.GetConsumingEnumerable()) a();
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        _thread.Join();
        _work.Dispose();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setpriority(int which, int who, int prio);

    [LibraryImport("libc")]
    private static partial int gettid();
}
