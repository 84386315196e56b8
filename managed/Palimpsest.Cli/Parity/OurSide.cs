using Palimpsest.Editing;
using Palimpsest.Evaluation;

namespace Palimpsest.Cli.Parity;

/// <summary>
/// The engine's side of the parity: the same requests through our ROME (each from the unedited
/// weights, as execute_rome computes each on the model it is given) or our MEMIT (one batch), with
/// what each computed under <see cref="ParityTensors"/>' names, and the target's probability before
/// and after each edit (the weights are restored after every measurement).
/// </summary>
internal static class OurSide
{
    /// <summary>The methods the official code holds (this folder is the one place in the CLI that knows editors by name: it compares exactly these two).</summary>
    public static readonly string[] Methods = [Editors.Rome.Name, Editors.Memit.Name];

    /// <summary>Our results and the context templates the editor used (ROME: a list; MEMIT: [["{}"], [generated]]).</summary>
    public static (ParityTensors Ours, object Templates) Run(LoadedModel lm, IEditor editor, IReadOnlyList<EditRequest> reqs) => editor switch
    {
        Rome rome => (RomeEdits(lm, rome, reqs), rome.LastTrace!.ContextTemplates),
        Memit memit => (MemitBatch(lm, memit, reqs), memit.Templates!),
        _ => throw new CliUsageException($"parity: {editor.Method} has no official code here ({string.Join(", ", Methods)})"),
    };

    /// <summary>What our hparams may set that the official code has written in or lacks: each a one-line usage error.</summary>
    public static void CheckComparable(EditMethod em)
    {
        var j = System.Text.Json.Nodes.JsonNode.Parse(em.HparamsJson)!.AsObject();
        if (j["v_early_stop_loss"]?.GetValue<double>() is { } stop && stop != ParityExport.OfficialEarlyStop)
            throw new CliUsageException($"hparams v_early_stop_loss {Invariant(stop)}: the official code stops at {Invariant(ParityExport.OfficialEarlyStop)} (written in); set it to that");
        if (j["norm_anchor"]?.GetValue<bool>() == true) throw new CliUsageException("hparams norm_anchor: the official code has no norm anchors; leave it out");
        if (em.FactToken == "last" && em.Kind == Editors.Memit)
            throw new CliUsageException("hparams fact_token \"last\": the official MEMIT refuses it (compute_z.py: \"This is definitely bugged, fix it.\"); use subject_last");
    }

    private static string Invariant(double x) => x.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static ParityTensors RomeEdits(LoadedModel lm, Rome rome, IReadOnlyList<EditRequest> reqs)
    {
        var t = new ParityTensors();
        var scorer = new TargetScorer(lm.Tf, lm.Tok);
        t.ProbBefore = reqs.Select(r => scorer.Score(r.FilledPrompt, r.TargetNew).MeanProb).ToArray();
        var after = new double[reqs.Count];
        for (int i = 0; i < reqs.Count; i++)
        {
            var delta = rome.ComputeDeltas(lm.Tf, [reqs[i]])[0];
            var trace = rome.LastTrace!;
            t.Add($"r{i}.u", delta.Left);
            t.Add($"r{i}.right", delta.Right);
            t.Add($"r{i}.kbar", trace.KBar);
            t.Add($"r{i}.kp", trace.KPrompt);
            t.Add($"r{i}.vstar", trace.VStar);
            var old = lm.Model.ApplyDelta(delta);
            after[i] = scorer.Score(reqs[i].FilledPrompt, reqs[i].TargetNew).MeanProb;
            lm.Model.SetDownProjection(delta.Layer, old);
        }
        t.ProbAfter = after;
        return t;
    }

    public static ParityTensors MemitBatch(LoadedModel lm, Memit memit, IReadOnlyList<EditRequest> reqs)
    {
        var t = new ParityTensors();
        var scorer = new TargetScorer(lm.Tf, lm.Tok);
        t.ProbBefore = reqs.Select(r => scorer.Score(r.FilledPrompt, r.TargetNew).MeanProb).ToArray();
        var deltas = memit.ComputeDeltas(lm.Tf, reqs);
        int n = reqs.Count, d = lm.Config.DModel, f = lm.Config.DFf;
        t.Add("z", memit.LastTargets!.SelectMany(z => z).ToArray(), n, d);
        foreach (var (layer, k, _) in memit.LastSolves!)
            t.Add($"l{layer}.keys", k.Transpose().ToRowMajorArray(), n, f);       // K [f, n] → [n, f]
        var restore = new List<(int Layer, double[] Old)>();
        foreach (var delta in deltas)
        {
            // ΔW = Σ_i Left[i] ⊗ Right[i] = adj · residᵀ with adj [f, n] = Leftᵀ, resid [d, n] = Rightᵀ
            t.Add($"l{delta.Layer}.adj", ParityTensors.Transpose(delta.Left, n, f), f, n);
            t.Add($"l{delta.Layer}.resid", ParityTensors.Transpose(delta.Right, n, d), d, n);
            restore.Add((delta.Layer, lm.Model.ApplyDelta(delta)));
        }
        t.ProbAfter = reqs.Select(r => scorer.Score(r.FilledPrompt, r.TargetNew).MeanProb).ToArray();
        for (int i = restore.Count - 1; i >= 0; i--) lm.Model.SetDownProjection(restore[i].Layer, restore[i].Old);
        return t;
    }
}
