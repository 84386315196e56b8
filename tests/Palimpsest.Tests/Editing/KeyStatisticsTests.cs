using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tests.Runtime;

namespace Palimpsest.Tests.Editing;

public sealed class KeyStatisticsTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-keystats-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static Model Tiny(string config, int seed = 3, Action<ParamSet<HostTensor>>? tweak = null)
    {
        var cfg = SmallConfigs.Get(config);
        var host = RandomWeights.Create(cfg, seed);
        tweak?.Invoke(host);
        return Model.FromHost(cfg, host, new ReferenceBackend());
    }

    // Sentences of awkward lengths; one longer than the context (19) so it is split into 19 + 11.
    private static Corpus RandomCorpus(int vocab, int seed = 1)
    {
        var rng = new Random(seed);
        int[] lengths = [5, 1, 30, 7, 19, 2];
        return new Corpus("random", lengths.Select(n => Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray()).ToArray());
    }

    // E[k kᵀ] by plain loops over the keys of each context-sized piece.
    private static double[] BruteForce(Transformer tf, Corpus corpus, int layer)
    {
        var c = tf.Model.Config;
        int f = c.DFf;
        var s = new double[f * f];
        long n = 0;
        foreach (var sentence in corpus.Sentences)
            for (int start = 0; start < sentence.Length; start += c.MaxPositions)
            {
                int len = Math.Min(c.MaxPositions, sentence.Length - start);
                using var r = tf.Forward(sentence.AsSpan(start, len), new ForwardOptions { CaptureKeysAt = [layer] });
                var k = new double[len * f];
                tf.Model.Backend.ToHost(r.MlpKeys[layer], k);
                for (int t = 0; t < len; t++, n++)
                    for (int i = 0; i < f; i++)
                        for (int j = 0; j < f; j++) s[i * f + j] += k[t * f + i] * k[t * f + j];
            }
        for (int i = 0; i < s.Length; i++) s[i] /= n;
        return s;
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama-mqa-tied")]
    public void Compute_EqualsBruteForceFloat64_ForSeveralLayersInOnePass(string config)
    {
        using var model = Tiny(config);
        var tf = new Transformer(model);
        var corpus = RandomCorpus(model.Config.Vocab);
        var layers = Enumerable.Range(0, model.Config.Layers).ToArray();
        var stats = KeyStatistics.Compute(tf, corpus, layers, cancel: TestContext.Current.CancellationToken);
        foreach (int l in layers)
        {
            Assert.Equal(corpus.TokenCount, stats[l].TokenCount);
            Assert.Equal(model.Config.DFf, stats[l].Dim);
            Num.AssertClose(stats[l].Matrix, BruteForce(tf, corpus, l), 1e-12, $"{config} layer {l}");
        }
    }

    [Fact]
    public void MaxTokens_CutsTheCorpus()
    {
        using var model = Tiny("gpt2");
        var tf = new Transformer(model);
        var corpus = RandomCorpus(model.Config.Vocab);
        var s = KeyStatistics.Compute(tf, corpus, [1], maxTokens: 20, cancel: TestContext.Current.CancellationToken)[1];
        Assert.Equal(20, s.TokenCount);
        // The first 20 tokens: sentences of 5 and 1, then 14 of the 30-token one.
        var first20 = new Corpus("cut", [corpus.Sentences[0], corpus.Sentences[1], corpus.Sentences[2][..14]]);
        Num.AssertClose(s.Matrix, BruteForce(tf, first20, 1), 1e-12, "first 20 tokens");
    }

    [Theory]
    [InlineData(37, 13)]
    [InlineData(8, 64)]
    [InlineData(61, 1)]
    [InlineData(3, 5)]
    [InlineData(53, 7)]
    public void BlockedSyrk_MatchesScalarReference(int f, int rows)
    {
        var rng = new Random(f * 100 + rows);
        var k = Enumerable.Range(0, f * rows).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var slow = new double[f * f];
        KeyStatisticsAccumulator.SyrkScalar(k, rows, f, slow, 0, f);
        var kernels = new List<(string, Action<double[], int, int, double[]>)>();
        if (System.Runtime.Intrinsics.X86.Fma.IsSupported) kernels.Add(("avx2", KeyStatisticsAccumulator.SyrkAvx));
        if (System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) kernels.Add(("avx512", KeyStatisticsAccumulator.SyrkAvx512));
        if (kernels.Count == 0) Assert.Skip("this CPU has neither AVX2+FMA nor AVX-512: only the scalar kernel runs");
        foreach (var (name, kernel) in kernels)
        {
            var fast = new double[f * f];
            kernel(k, rows, f, fast);
            // Only the upper triangle (i >= j) is defined.
            var a = new List<double>(); var b = new List<double>();
            for (int j = 0; j < f; j++) for (int i = j; i < f; i++) { a.Add(fast[j * f + i]); b.Add(slow[j * f + i]); }
            Num.AssertClose(a.ToArray(), b.ToArray(), 1e-14, $"{name} syrk f={f} rows={rows}");
        }
    }

    [Fact]
    public void Cache_HitReturnsTheIdenticalMatrix_AndAnEditBelowTheLayerInvalidatesIt()
    {
        using var model = Tiny("gpt2");
        var tf = new Transformer(model);
        var corpus = RandomCorpus(model.Config.Vocab);
        var first = KeyStatisticsCache.GetOrCompute(tf, corpus, [0, 1], _tmp, cancel: TestContext.Current.CancellationToken)[1];
        Assert.Equal(2, Directory.GetFiles(_tmp, "keystats-*.safetensors").Length);

        var reports = new List<double>();
        var again = KeyStatisticsCache.GetOrCompute(tf, corpus, [1], _tmp, progress: new SyncProgress(reports.Add), cancel: TestContext.Current.CancellationToken)[1];
        Assert.Equal([1.0], reports); // no pass over the corpus
        Assert.NotSame(first.Matrix, again.Matrix);
        Assert.Equal(first.Matrix, again.Matrix);
        Assert.Equal(first.TokenCount, again.TokenCount);

        // Layer 1's down-projection does not feed layer 1's keys: same key. Layer 0's does: new key.
        using var editedOwn = Tiny("gpt2", tweak: p => Bump(p.Blocks[1].WDown));
        using var editedBelow = Tiny("gpt2", tweak: p => Bump(p.Blocks[0].WDown));
        string key = KeyStatisticsCache.Key(tf, corpus, 1, corpus.TokenCount);
        Assert.Equal(key, KeyStatisticsCache.Key(new Transformer(editedOwn), corpus, 1, corpus.TokenCount));
        Assert.NotEqual(key, KeyStatisticsCache.Key(new Transformer(editedBelow), corpus, 1, corpus.TokenCount));

        reports.Clear();
        var recomputed = KeyStatisticsCache.GetOrCompute(new Transformer(editedBelow), corpus, [1], _tmp, progress: new SyncProgress(reports.Add), cancel: TestContext.Current.CancellationToken)[1];
        Assert.True(reports.Count > 1, "an edited model must recompute");
        Assert.NotEqual(first.Matrix, recomputed.Matrix);
        Num.AssertClose(recomputed.Matrix, BruteForce(new Transformer(editedBelow), corpus, 1), 1e-12, "recomputed after edit");

        // Another corpus or token count is another key too.
        Assert.NotEqual(key, KeyStatisticsCache.Key(tf, RandomCorpus(model.Config.Vocab, seed: 2), 1, corpus.TokenCount));
        Assert.NotEqual(key, KeyStatisticsCache.Key(tf, corpus, 1, 20));
    }

    [Fact]
    public void Cache_DamagedFileIsRecomputed()
    {
        using var model = Tiny("gpt2");
        var tf = new Transformer(model);
        var corpus = RandomCorpus(model.Config.Vocab);
        var first = KeyStatisticsCache.GetOrCompute(tf, corpus, [1], _tmp, cancel: TestContext.Current.CancellationToken)[1];
        string file = Directory.GetFiles(_tmp, "keystats-l1-*.safetensors").Single();
        File.WriteAllBytes(file, [1, 2, 3]);
        var again = KeyStatisticsCache.GetOrCompute(tf, corpus, [1], _tmp, cancel: TestContext.Current.CancellationToken)[1];
        Assert.Equal(first.Matrix, again.Matrix);
        Assert.True(new FileInfo(file).Length > 100);
    }

    [Fact]
    public void Cache_ThatCannotBeWritten_GivesTheStatisticsAndOneWarning()
    {
        using var model = Tiny("gpt2");
        var tf = new Transformer(model);
        var corpus = RandomCorpus(model.Config.Vocab);
        string notAFolder = Path.Combine(_tmp, "a-file");
        File.WriteAllText(notAFolder, "the cache folder's name is taken by a file");
        var warnings = new List<string>();
        var stats = KeyStatisticsCache.GetOrCompute(tf, corpus, [0, 1], notAFolder, cancel: TestContext.Current.CancellationToken, warn: warnings.Add);
        Assert.Equal(KeyStatistics.Compute(tf, corpus, [1], cancel: TestContext.Current.CancellationToken)[1].Matrix, stats[1].Matrix);
        var w = Assert.Single(warnings);
        Assert.Contains("computed but not cached in " + notAFolder, w);
    }

    [Fact]
    public void Corpus_TextFileSkipsBlankLines()
    {
        string p = Path.Combine(_tmp, "wiki.txt");
        File.WriteAllText(p, " = Title = \n\n   \n Some text here .\n");
        var c = Corpus.TextFile(p, SubjectTokensTests.Gpt2());
        Assert.Equal(2, c.Sentences.Count);
        Assert.Equal(SubjectTokensTests.Gpt2().Encode(" Some text here ."), c.Sentences[1]);
    }

    [Fact]
    public void Corpus_FactSentencesAreTheSharedModelsTrainingSet()
    {
        string cf = Path.Combine(Paths.SharedOrSkip("datasets/counterfact"), "counterfact-edit.json");
        var tok = SubjectTokensTests.Gpt2();
        var c = Corpus.FactSentences(cf, tok, ..5000);
        Assert.Equal(14512, c.Sentences.Count); // models/README.md: 14,512 distinct sentences
        Assert.Equal([.. tok.Encode("The mother tongue of Danielle Darrieux is"), .. tok.Encode(" French"), 50256], c.Sentences[0]);
        Assert.All(c.Sentences, s => Assert.Equal(50256, s[^1]));
    }

    private static void Bump(HostTensor t)
    {
        if (t.F64 is not null) t.F64[3] += 0.01; else t.F32![3] += 0.01f;
    }

    // Progress<T> posts to the thread pool; this one records synchronously.
    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}
