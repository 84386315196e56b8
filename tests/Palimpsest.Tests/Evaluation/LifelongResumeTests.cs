using Palimpsest.Editing;
using Palimpsest.Evaluation;
using Palimpsest.Runtime;
using Palimpsest.Tests.Editing;
using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Evaluation;

/// <summary>
/// A lifelong run stopped part-way and resumed in a fresh process (here: a fresh model, editor and
/// harness, the state read back from disk) reaches the uninterrupted run's checkpoints and weights
/// bit for bit, for each editor (the weights, AlphaEdit's C_p and LEMoE's adaptor).
/// </summary>
public class LifelongResumeTests
{
    private static IEditor Make(string method, Model m, Palimpsest.Tokenization.ITextTokenizer tok)
    {
        var cms = Enumerable.Range(0, m.Config.Layers).Select(l => EditingFixtures.RandomSpd(m.Config.DFf, 30 + l)).ToArray();
        var rome = new RomeHparams { Layers = [0], VLossLayer = 1, VNumGradSteps = 4, ContextTemplateLengthParams = [[4, 2]], VLr = 0.5 };
        return method switch
        {
            "rome" => new Rome(rome, tok, l => cms[l]),
            "wilke" => new Wilke(rome, 2, tok, l => cms[l]) { MaxParallelLayers = 2 },
            "alphaedit" => new AlphaEdit(new AlphaEditHparams { Layers = [0], VLossLayer = 1, VNumGradSteps = 4, ContextTemplateLength = 4, NullspaceThreshold = 0.5, L2 = 1 }, tok, l => cms[l]),
            "memit" => new Memit(new MemitHparams { Layers = [0], VLossLayer = 1, VNumGradSteps = 4, ContextTemplateLength = 4, Mom2UpdateWeight = 10 }, tok, l => cms[l]),
            "ultraedit" => new UltraEdit(new UltraEditHparams { Layers = [0, 1], Lr = 0.05 }, tok),
            _ => throw new ArgumentException(method),
        };
    }

    // AlphaEdit remembers each batch's keys once it is applied, as the CLI has it do
    private static readonly LemoeHparams LemoeHp = new() { Layer = 1, ExpertRank = 4, RouterHidden = 4, KeyDim = 4, Steps = 3, Lr = 0.01 };

    private static IReadOnlyList<LifelongCheckpoint> Run(Transformer tf, Palimpsest.Tokenization.ITextTokenizer tok, string method, List<EditRequest> stream, int batch,
        List<EditRequest> heldOut, LifelongPersistence? persist = null)
    {
        // LEMoE trains an adaptor beside the weights: batches given in stream order here
        if (method == "lemoe")
            return new LifelongHarness(tf, tok).RunPlanned(new Lemoe(LemoeHp, tok), stream.Chunk(batch).Select(c => (IReadOnlyList<EditRequest>)c).ToList(), heldOut, persist: persist);
        var e = Make(method, tf.Model, tok);
        return new LifelongHarness(tf, tok).Run(e, stream, batch, heldOut, persist: persist);
    }

    // what the stream changed: every WDown, then the LEMoE adaptor's arrays (none for the weight editors)
    private static double[][] Fingerprint(Transformer tf, Palimpsest.Tokenization.ITextTokenizer tok) =>
        [.. Weights(tf.Model), .. new Lemoe(LemoeHp, tok).SaveMemory(tf).OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Value)];

    // the harness's stream with each request asking for the next one's answer, so every edit moves the weights
    private static (Palimpsest.Backends.Cpu.ReferenceBackend B, Model M, Transformer Tf, Palimpsest.Tokenization.ITextTokenizer Tok, List<EditRequest> Stream, List<EditRequest> HeldOut) Setup()
    {
        var (b, m, tf, tok, stream, heldOut) = LifelongHarnessTests.Setup();
        var moved = stream.Select((r, i) => r with { TargetNew = stream[(i + 1) % stream.Count].TargetNew }).ToList();
        return (b, m, tf, tok, moved, heldOut);
    }

    private static double[][] Weights(Model m) => Enumerable.Range(0, m.Config.Layers).Select(m.DownProjection).ToArray();

    [Theory]
    [InlineData("rome", 1)]
    [InlineData("wilke", 1)]
    [InlineData("memit", 2)]
    [InlineData("alphaedit", 2)]
    [InlineData("lemoe", 2)]
    [InlineData("ultraedit", 2)]
    public void A_run_resumed_from_its_saved_state_reaches_the_uninterrupted_runs_checkpoints_and_weights_bit_for_bit(string method, int batch)
    {
        using var dir = new TempDir();
        IReadOnlyList<LifelongCheckpoint> full; double[][] fullW;
        {
            var (b, m, tf, tok, stream, heldOut) = Setup();
            using var _b = b; using var _m = m;
            full = Run(tf, tok, method, stream, batch, heldOut);
            fullW = Fingerprint(tf, tok);
        }
        // LEMoE: two layers' WDown, the router's two arrays and five per expert, at least one expert
        Assert.True(method == "lemoe" ? fullW.Length >= 2 + 2 + 5 : full[^1].DeltaNorms.Values.Max() > 0, "the stream changed nothing: the test would prove nothing");

        var saved = new List<int>();
        {
            var (b, m, tf, tok, stream, heldOut) = Setup();
            using var _b = b; using var _m = m;
            var part = Run(tf, tok, method, stream, batch, heldOut,
                persist: new LifelongPersistence("""{"run": 1}""", Save: s => { LifelongStateFile.Save(dir.Path, s, m.Config.DFf); saved.Add(s.Edits); }, StopAfter: 3));
            Assert.True(part[^1].Edits < stream.Count, "the run should have stopped part-way");
        }
        Assert.Equal(batch == 1 ? [1, 2, 3] : [2, 4], saved); // every checkpoint, and where it stopped
        var state = LifelongStateFile.Load(dir.Path);
        Assert.Equal(saved[^1], state.Edits);
        Assert.Single(Directory.GetFiles(dir.Path, "weights-*.safetensors"));

        IReadOnlyList<LifelongCheckpoint> resumed; double[][] resumedW;
        {
            var (b, m, tf, tok, stream, heldOut) = Setup();
            using var _b = b; using var _m = m;
            resumed = Run(tf, tok, method, stream, batch, heldOut, persist: new LifelongPersistence("""{"run": 1}""", From: state));
            resumedW = Fingerprint(tf, tok);
        }
        Assert.Equal(full.Count, resumed.Count);
        Assert.Equal(fullW.Length, resumedW.Length);
        for (int i = 0; i < full.Count; i++)
        {
            var (a, r) = (full[i], resumed[i]);
            Assert.True(a.Edits == r.Edits && a.ES.Equals(r.ES) && a.GS.Equals(r.GS) && a.LS.Equals(r.LS) && a.ERS.Equals(r.ERS) && a.ORS.Equals(r.ORS) && a.S.Equals(r.S),
                $"checkpoint {a.Edits}: uninterrupted {a}, resumed {r}");
            Assert.Equal(a.DeltaNorms.OrderBy(kv => kv.Key), r.DeltaNorms.OrderBy(kv => kv.Key));
        }
        for (int l = 0; l < fullW.Length; l++)
        {
            int diff = fullW[l].Zip(resumedW[l]).Count(p => p.First != p.Second);
            Assert.True(diff == 0, $"array {l} (WDown per layer, then the adaptor's): {diff} values differ between the uninterrupted and the resumed run");
        }
    }

    /// <summary>The state is saved at each checkpoint (1, 2, 4, 5 here), and also Every edits after the last save and after a batch that ends EveryTime after it.</summary>
    [Fact]
    public void The_state_is_saved_at_checkpoints_by_count_and_by_time()
    {
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        List<int> Saves(int every, TimeSpan? period)
        {
            var at = new List<int>();
            Run(tf, tok, "rome", stream, 1, heldOut, new LifelongPersistence("{}", Save: s => at.Add(s.Edits), Every: every, EveryTime: period));
            return at;
        }
        Assert.Equal([1, 2, 4, 5], Saves(0, null));
        Assert.Equal([1, 2, 3, 4, 5], Saves(1, null)); // Every counts edits since the last save, checkpoints included
        Assert.Equal([1, 2, 4, 5], Saves(2, null));
        Assert.Equal([1, 2, 3, 4, 5], Saves(0, TimeSpan.Zero));
        Assert.Equal([1, 2, 4, 5], Saves(0, TimeSpan.FromHours(1)));
    }

    [Fact]
    public void A_state_that_does_not_fit_the_stream_or_the_model_is_refused_with_the_reason()
    {
        using var dir = new TempDir();
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        LifelongState? state = null;
        new LifelongHarness(tf, tok).Run(Make("rome", m, tok), stream, 1, heldOut, persist: new LifelongPersistence("{}", Save: s => state = s, StopAfter: 2));
        Assert.NotNull(state);
        var (b2, m2, tf2, tok2, _, _) = Setup();
        using var _b2 = b2; using var _m2 = m2;
        var e = Assert.Throws<ArgumentException>(() => new LifelongHarness(tf2, tok2).Run(Make("rome", m2, tok2), stream.Take(1).ToList(), 1, heldOut,
            persist: new LifelongPersistence("{}", From: state)));
        Assert.Contains("do not fit this stream of 1 edits", e.Message);
        e = Assert.Throws<ArgumentException>(() => new LifelongHarness(tf2, tok2).Run(Make("rome", m2, tok2), stream, 1, heldOut,
            persist: new LifelongPersistence("{}", From: state! with { Kept = [] })));
        Assert.Contains("not the same model or held-out facts", e.Message);

        // on disk: a corrupt state file is one error naming it
        LifelongStateFile.Save(dir.Path, state!, m.Config.DFf);
        File.WriteAllText(Path.Combine(dir.Path, "state.json"), "{\"format\": ");
        e = Assert.Throws<ArgumentException>(() => { LifelongStateFile.Load(dir.Path); });
        Assert.Contains("state.json: malformed JSON", e.Message);
    }
}
