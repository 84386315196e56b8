using Palimpsest.Backends.Cpu;

namespace Palimpsest.Tests.Backends;

/// <summary>The backend's fork-join loop: every index exactly once, errors surface, nesting runs inline.</summary>
public class SimdWorkersTests
{
    private sealed class CountingJob(int n) : IParallelJob
    {
        public readonly int[] Hits = new int[n];
        public int ThrowAt = -1;
        public Action<int>? Inner;

        public void Run(int index)
        {
            if (index == ThrowAt) throw new InvalidOperationException($"job {index} failed");
            Inner?.Invoke(index);
            Interlocked.Increment(ref Hits[index]);
        }
    }

    [Fact]
    public void Every_index_runs_exactly_once_across_many_loops()
    {
        using var w = new SimdWorkers(3);
        for (int round = 0; round < 200; round++)
        {
            int n = 1 + round % 37;
            var job = new CountingJob(n);
            w.For(n, job);
            int bad = Array.FindIndex(job.Hits, h => h != 1);
            Assert.True(bad < 0, $"round {round}: index {bad} ran {(bad < 0 ? 0 : job.Hits[bad])} times");
        }
    }

    [Fact]
    public void One_thread_runs_everything_inline_and_disposes_cleanly()
    {
        var w = new SimdWorkers(1);
        var job = new CountingJob(9);
        w.For(9, job);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
        w.Dispose();
        w.Dispose(); // twice is harmless
    }

    [Fact]
    public void A_failing_index_is_rethrown_and_the_workers_stay_usable()
    {
        using var w = new SimdWorkers(2);
        var failing = new CountingJob(50) { ThrowAt = 17 };
        var e = Assert.Throws<AggregateException>(() => w.For(50, failing));
        Assert.Contains("job 17 failed", e.InnerException!.Message);
        var ok = new CountingJob(50);
        w.For(50, ok);
        Assert.All(ok.Hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void A_loop_started_inside_a_loop_runs_inline_to_completion()
    {
        using var w = new SimdWorkers(2);
        var inner = new CountingJob[8];
        var outer = new CountingJob(8);
        outer.Inner = i => { inner[i] = new CountingJob(10); w.For(10, inner[i]); };
        w.For(8, outer);
        Assert.All(outer.Hits, h => Assert.Equal(1, h));
        Assert.All(inner, j => Assert.All(j.Hits, h => Assert.Equal(1, h)));
    }
}
