using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// GC.GetTotalAllocatedBytes counts every thread of the process (the backend's workers included),
/// so these tests run alone: not in parallel with any other test collection.
/// </summary>
[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>A warm <see cref="DecodeSession.Step"/> on the <see cref="SimdBackend"/> allocates nothing on the managed heap.</summary>
[Collection(nameof(AllocationCollection))]
public class DecodeAllocationTests
{
    private const int Steps = 16, Rounds = 3;

    public static TheoryData<string, int> Cases() => new()
    {
        { "gpt2", 0 }, { "gpt2", 5 }, { "gptj", 0 }, { "gptj", 5 }, { "llama-gqa", 0 }, { "llama-gqa", 5 },
        { "mistral-window", 0 }, // past its window of 4: attention reads the cache's last rows in place
        { "qwen2-window", 0 },   // a full layer beside sliding ones, whose rows move to the front at every step (slack 1)
    };

    [Theory, MemberData(nameof(Cases))]
    public void A_warm_decode_step_allocates_nothing(string name, int topK)
    {
        // room for a 5-token prompt, 2 warm-up steps and Rounds × Steps measured steps
        var c = SmallConfigs.Get(name) with { MaxPositions = 64 };
        using var b = new SimdBackend(threads: 2);
        using var model = Model.FromHost(c, RandomWeights.Create(c, 3, 0.5), b);
        using var tf = new Transformer(model);
        using var session = new DecodeSession(tf, c.MaxPositions, new Sampling { TopK = topK, Seed = 7 });
        int token = session.Prefill([3, 1, 4, 1, 5]);
        token = session.Step(token);
        token = session.Step(token);
        // The least of a few rounds: an allocation of a step shows in every round, while one by
        // another thread of the process (the test host) shows in one at most.
        long least = long.MaxValue;
        for (int r = 0; r < Rounds; r++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            for (int i = 0; i < Steps; i++) token = session.Step(token);
            least = Math.Min(least, GC.GetTotalAllocatedBytes(precise: true) - before);
        }
        Assert.True(least == 0, $"{name}, top-k {topK}: {least} B allocated over {Steps} warm steps ({least / (double)Steps:0.#} B per step)");
    }
}
