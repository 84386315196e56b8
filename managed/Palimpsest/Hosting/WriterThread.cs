using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Palimpsest.Hosting;

/// <summary>
/// The one thread that writes (edits, reverts, forecasts): it serialises them, and on Linux runs at
/// the lowest CPU priority (nice 19), so that decoding streams preempt an edit's computation
/// instead of sharing the cores with it — on a small machine the computation, not the publish, is
/// what traffic would otherwise feel. Its backend instance runs its ops on this thread alone.
/// </summary>
internal sealed partial class WriterThread : IDisposable
{
    private readonly BlockingCollection<Action> _work = new();
    private readonly Thread _thread;
    private readonly bool _lowPriority;

    public WriterThread(bool lowPriority)
    {
        _lowPriority = lowPriority;
        _thread = new Thread(Loop) { IsBackground = true, Name = "palimpsest-writer" };
        _thread.Start();
    }

    /// <summary>Whether the thread runs at nice 19 (false where the OS refused or is not Linux).</summary>
    public bool Lowered { get; private set; }

    /// <summary>Runs <paramref name="work"/> on the writer thread after what is queued before it; its exception is rethrown here.</summary>
    public T Run<T>(Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        _work.Add(() =>
        {
            try { done.SetResult(work()); }
            catch (Exception e) { done.SetException(e); }
        });
        return done.Task.GetAwaiter().GetResult();
    }

    private void Loop()
    {
        if (_lowPriority && OperatingSystem.IsLinux())
        {
            // setpriority(PRIO_PROCESS, tid) renices this thread only (Linux threads are tasks)
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
