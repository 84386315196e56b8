using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Bench;

/// <summary>The committed fact model data/models/facts-d128-l5 on the float32 SIMD backend, with its tokenizer and key statistics, for the editing benchmarks.</summary>
internal sealed class FactModel : IDisposable
{
    public FactModel()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        Folder = Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Engine.sln not found"), "data", "models", "facts-d128-l5");
        Backend = new SimdBackend();
        Model = Model.Load(Folder, Backend);
        Tf = new Transformer(Model);
        Tok = TokenizerFactory.ForModel(Folder, Model.Config);
    }

    public string Folder { get; }
    public SimdBackend Backend { get; }
    public Model Model { get; }
    public Transformer Tf { get; }
    public ITextTokenizer Tok { get; }

    /// <summary>The key statistics of these layers over the folder's corpus.txt, computed (not read from a cache).</summary>
    public IReadOnlyDictionary<int, KeyStatistics> Stats(IReadOnlyList<int> layers)
    {
        string cache = Directory.CreateTempSubdirectory("palimpsest-bench-").FullName;
        try { return KeyStatisticsCache.GetOrCompute(Tf, Corpus.TextFile(Path.Combine(Folder, "corpus.txt"), Tok), layers, cache); }
        finally { Directory.Delete(cache, recursive: true); }
    }

    public void Dispose()
    {
        Tf.Dispose();
        Model.Dispose();
        Backend.Dispose();
    }
}
