using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;
using static Palimpsest.Tests.Editing.EditingFixtures;

namespace Palimpsest.Tests.Editing;

/// <summary>LEMoE: the adaptor's routing, training, exact revert, persistence and the K-means order.</summary>
public class LemoeTests
{
    private static readonly EditRequest[] Batch1 =
    [
        new() { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English" },
        new() { Subject = "Edwin of Northumbria", Prompt = "The official religion of {} is", TargetNew = "Islam" },
    ];
    private static readonly EditRequest[] Batch2 =
    [
        new() { Subject = "Toko Yasuda", Prompt = "{} plays the instrument", TargetNew = "piano solo" },
    ];

    private static (ReferenceBackend B, Model M, Transformer Tf, ITextTokenizer Tok) Setup()
    {
        var c = Gpt2Vocab(3, 32, 4, 64);
        var b = new ReferenceBackend();
        var m = Model.FromHost(c, RandomWeights.Create(c, 23, 0.2), b);
        return (b, m, new Transformer(m), TokenizerFactory.Gpt2(c));
    }

    private static LemoeHparams Hp => new() { Layer = 1, ExpertRank = 8, RouterHidden = 6, KeyDim = 5, Lr = 0.01, Steps = 12, EarlyStopLoss = 0 };

    private static double[] Logits(Transformer tf, int[] ids)
    {
        using var r = tf.Forward(ids);
        var h = new double[r.Logits.Length];
        tf.Model.Backend.ToHost(r.Logits, h);
        return h;
    }

    [Fact]
    public void Training_lowers_the_target_nll_and_routes_the_batch_to_its_new_expert()
    {
        var (b, m, tf, tok) = Setup();
        using var _b = b; using var _m = m;
        var lemoe = new Lemoe(Hp, tok);
        lemoe.Edit(tf, Batch1);
        var t = lemoe.LastTrace!;
        Assert.Equal(0, t.Expert);
        Assert.Equal(12, t.Steps);
        Assert.True(t.FinalNll < t.InitialNll - 0.5, $"NLL {t.InitialNll} -> {t.FinalNll}");
        lemoe.Edit(tf, Batch2);
        Assert.Equal(1, lemoe.LastTrace!.Expert);
        Assert.True(lemoe.LastTrace.RoutedToNew > 0.5, $"only {lemoe.LastTrace.RoutedToNew} of the target rows route to the new expert");
        // a batch longer than the model's 48 positions trains in several packed forwards
        var many = Enumerable.Range(0, 6).Select(i => new EditRequest { Subject = $"Person Number {i}", Prompt = "The favourite food of {} is", TargetNew = "rice" }).ToArray();
        lemoe.Edit(tf, many);
        Assert.Equal(2, lemoe.LastTrace!.Expert);
        Assert.True(lemoe.LastTrace.FinalNll < lemoe.LastTrace.InitialNll, $"NLL {lemoe.LastTrace.InitialNll} -> {lemoe.LastTrace.FinalNll}");
        Assert.Equal(6, lemoe.LastTrainingRoutes!.Count);
        Assert.Same(tf.Adaptor, Lemoe.AdaptorOf(tf, Hp));
        Assert.Throws<ArgumentException>(() => Lemoe.AdaptorOf(tf, Hp with { Layer = 2 }));
    }

    /// <summary>
    /// Every row of a request is routed in the packed training forward exactly as in inference:
    /// the prompt alone, then the target tokens one at a time through a KV cache.
    /// </summary>
    [Fact]
    public void Routes_are_the_same_in_training_and_in_cached_inference()
    {
        var (b, m, tf, tok) = Setup();
        using var _b = b; using var _m = m;
        var lemoe = new Lemoe(Hp, tok);
        lemoe.Edit(tf, Batch1);
        lemoe.Edit(tf, Batch2);
        var adaptor = (LemoeAdaptor)tf.Adaptor!;
        var training = lemoe.LastTrainingRoutes!;
        var req = Batch2[0];
        var prompt = tok.Encode(req.FilledPrompt);
        var target = tok.Encode(" " + req.TargetNew);
        Assert.True(target.Length >= 2, "a multi-token target exercises the cache");
        using var cache = new KvCache(m, 32);
        var seen = new List<int>();
        using (tf.Forward(prompt, null, cache)) seen.AddRange(adaptor.LastRoutes);
        for (int j = 0; j < target.Length - 1; j++)
            using (tf.Forward(target.AsSpan(j, 1), null, cache)) seen.AddRange(adaptor.LastRoutes);
        Assert.Equal(training[0], seen.ToArray());
        Assert.Contains(1, seen); // the new expert serves the request
    }

    [Fact]
    public void Removing_the_newest_expert_restores_the_outputs_bit_for_bit_and_save_load_roundtrips()
    {
        var (b, m, tf, tok) = Setup();
        using var _b = b; using var _m = m;
        var ids = tok.Encode("The mother tongue of Danielle Darrieux is English, and");
        var lemoe = new Lemoe(Hp, tok);
        lemoe.Edit(tf, Batch1);
        var afterFirst = Logits(tf, ids);
        lemoe.Edit(tf, Batch2);
        var afterSecond = Logits(tf, ids);
        Assert.NotEqual(afterFirst, afterSecond);

        string dir = Directory.CreateTempSubdirectory("palimpsest-lemoe-").FullName;
        string path = Path.Combine(dir, "lemoe.safetensors");
        var adaptor = (LemoeAdaptor)tf.Adaptor!;
        adaptor.Save(path);
        var tf2 = new Transformer(m) { Adaptor = LemoeAdaptor.Load(path, m, Hp) };
        Assert.Equal(afterSecond, Logits(tf2, ids));
        Assert.Throws<ModelFormatException>(() => LemoeAdaptor.Load(path, m, Hp with { ExpertRank = 9 }));

        adaptor.RemoveExpert(1);
        Assert.Equal(afterFirst, Logits(tf, ids));
        adaptor.RemoveExpert(0);
        tf.Adaptor = null;
        var bare = Logits(tf, ids);
        tf.Adaptor = adaptor;
        Assert.Equal(bare, Logits(tf, ids)); // no expert: no change
        Assert.Throws<ArgumentOutOfRangeException>(() => adaptor.RemoveExpert(0));
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>
    /// The trainer's host gradients (expert, key, router) against central differences of
    /// L = Σ_t G_t · out_t + w Σ_rows −log p_n, on random experts, keys and inputs (3 experts, the
    /// newest trainable), float64: relative error below 1e-6.
    /// </summary>
    [Fact]
    public void Adaptor_gradients_match_finite_differences()
    {
        var (b, m, _, _) = Setup();
        using var _b = b; using var _m = m;
        var a = new LemoeAdaptor(m, Hp);
        var rng = new Random(11);
        double[] R(int n, double s) => Enumerable.Range(0, n).Select(_ => (rng.NextDouble() * 2 - 1) * s).ToArray();
        for (int i = 0; i < 3; i++) a.AddExpert(R(a.Rank * a.DFf, 0.3), R(a.DModel * a.Rank, 0.3), R(a.KeyDim, 1.0));
        int T = 7, n = 2;
        var e = Enumerable.Range(0, T).Select(_ => R(a.DModel, 1.0)).ToArray();
        var keys = R(T * a.DFf, 1.0);
        var G = R(T * a.DModel, 1.0);
        var isRow = new[] { false, true, false, true, true, false, true };
        double w = 0.7;
        double Loss()
        {
            var o = a.AdaptorOutput(e, keys, out _);
            double l = 0;
            for (int i = 0; i < o.Length; i++) l += G[i] * o[i];
            for (int t = 0; t < T; t++) if (isRow[t]) l -= w * Math.Log(a.RouteOf(e[t]).Probs[n]);
            return l;
        }
        var (gA, gB, gKey, gDown, gUp) = a.Gradients(e, keys, G, n, isRow, w);
        a.AdaptorOutput(e, keys, out var routes);
        Assert.Contains(n, routes);                 // rows through the trainable expert
        Assert.Contains(routes, r => r != n);       // and rows whose gate belongs to a frozen one
        var ex = a.Experts[n];
        foreach (var (name, p, g) in new[] { ("A", ex.A, gA), ("B", ex.B, gB), ("key", ex.Key, gKey), ("W_down", a.RouterDown, gDown), ("W_up", a.RouterUp, gUp) })
        {
            var num = new double[p.Length];
            for (int i = 0; i < p.Length; i++)
            {
                double keep = p[i], h = 1e-6;
                p[i] = keep + h; double lp = Loss();
                p[i] = keep - h; double lm = Loss();
                p[i] = keep;
                num[i] = (lp - lm) / (2 * h);
            }
            Num.AssertClose(g, num, 1e-6, $"dL/d{name}");
        }
    }

    [Fact]
    public void Kmeans_plan_keeps_clusters_together_and_is_deterministic()
    {
        var rng = new Random(5);
        // two well-separated groups, interleaved in the stream
        var reqs = Enumerable.Range(0, 12).Select(i => new EditRequest { Subject = $"s{i}", Prompt = "{} is", TargetNew = "x" }).ToArray();
        double[] Embed(EditRequest r)
        {
            int i = int.Parse(r.Subject[1..], System.Globalization.CultureInfo.InvariantCulture);
            double centre = i % 2 == 0 ? -10 : 10;
            return [centre + rng.NextDouble(), rng.NextDouble()];
        }
        var emb = reqs.ToDictionary(r => r.Subject, Embed);
        var plan = LemoePlanner.Plan(reqs, 6, r => emb[r.Subject], seed: 3);
        Assert.Equal(2, plan.Count);
        foreach (var batch in plan)
            Assert.Single(batch.Select(r => int.Parse(r.Subject[1..], System.Globalization.CultureInfo.InvariantCulture) % 2).Distinct());
        Assert.Equal("s0", plan[0][0].Subject); // clusters in the order of their first request
        var again = LemoePlanner.Plan(reqs, 6, r => emb[r.Subject], seed: 3);
        Assert.Equal(plan.SelectMany(x => x).Select(r => r.Subject), again.SelectMany(x => x).Select(r => r.Subject));
        Assert.Equal(reqs.Length, plan.Sum(x => x.Count));
    }
}
