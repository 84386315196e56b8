using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Journal;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest demo MODEL [--subject S] [--target T] [--hparams FILE]`: the whole product in one
/// run on a model trained by `palimpsest train` (it reads MODEL/requests.json, MODEL/corpus.txt and
/// MODEL/rome.json): shows a fact, rewrites it with ROME through the journal (in a temporary copy),
/// shows the new answer on the edited prompt and on a phrasing the model never saw for this fact,
/// checks an unrelated fact is unchanged, then reverts and checks the weights are bit-exact.
/// </summary>
internal static class DemoCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var subject = new Option<string?>("--subject") { Description = "subject of the fact to rewrite (a record of MODEL/requests.json); default: its first record" };
        var target = new Option<string?>("--target") { Description = "the new answer (default: the record's target_new)" };
        var hparams = new Option<string?>("--hparams") { Description = "ROME hyper-parameters (default MODEL/rome.json)" };
        var cache = KeyStatsOptions.Cache();
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("demo", "show a fact, rewrite it with ROME, check a paraphrase and an unrelated fact, revert") { model, subject, target, hparams, cache, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            var total = Stopwatch.StartNew();
            string src = pr.GetValue(model)!;
            string reqPath = Path.Combine(src, "requests.json"), corpusPath = Path.Combine(src, "corpus.txt");
            string hp = pr.GetValue(hparams) ?? Path.Combine(src, "rome.json");
            foreach (var (f, what) in new[] { (reqPath, "requests.json"), (corpusPath, "corpus.txt"), (hp, "ROME hparams") })
                if (!File.Exists(f)) throw new CliUsageException($"{f}: {what} not found (the demo needs a model written by palimpsest train, with rome.json beside it)");
            var records = DatasetReader.Load(reqPath);
            string? want = pr.GetValue(subject);
            var rec = want is null ? records[0] : records.FirstOrDefault(r => string.Equals(r.Subject, want, StringComparison.OrdinalIgnoreCase))
                ?? throw new CliUsageException($"--subject '{want}': no record of {reqPath} has this subject");
            if (pr.GetValue(target) is { } t) rec = rec with { TargetNew = t };
            var em0 = EditMethod.Parse(Editors.Rome.Name, hp, null); // the demo is ROME's own example

            string dir = Path.Combine(Path.GetTempPath(), $"palimpsest-demo-{Environment.ProcessId}");
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            try
            {
                using var em = EditedModel.Create(src, dir);
                using var lm = LoadedModel.Open(em.Dir, dev);
                string paraphrase = rec.ParaphrasePrompts.FirstOrDefault() ?? throw new CliUsageException($"{reqPath}: record of '{rec.Subject}' has no rephrase_prompt");
                string unrelated = rec.NeighborhoodPrompts.FirstOrDefault() ?? throw new CliUsageException($"{reqPath}: record of '{rec.Subject}' has no locality_prompt");
                var prompts = new[] { ("edited prompt", rec.FilledPrompt), ("paraphrase (never trained for this fact)", paraphrase), ("unrelated fact", unrelated) };
                string[] Answers() => prompts.Select(p => lm.GreedyAnswer(p.Item2, 4)).ToArray();
                void Show(string title, string[] answers)
                {
                    io.Out.WriteLine(title);
                    for (int i = 0; i < prompts.Length; i++)
                        io.Out.WriteLine($"  {prompts[i].Item1,-42} {prompts[i].Item2} ->{TokenText.Quote(answers[i])}");
                }
                io.Out.WriteLine($"model {src}: {lm.Config.Layers} layers, d_model {lm.Config.DModel}; rewriting ({rec.Subject}: {rec.TargetTrue} -> {rec.TargetNew}) with ROME at layer {em0.Layers[0]}");
                var before = Answers();
                Show("before the edit:", before);

                // the copy's matrix before the edit is the source's, byte for byte: the bit-exact reference
                int layer = em0.Layers[0];
                var original = em.ReadDownProjection(layer).ToFloat();
                var sw = Stopwatch.StartNew();
                var corpus = Editing.Data.Corpus.TextFile(corpusPath, lm.Tok);
                var stats = KeyStatsOptions.GetOrCompute(lm, corpus, em0.Layers, KeyStatsOptions.CacheDir(pr.GetValue(cache)), null, io);
                double statsSecs = sw.Elapsed.TotalSeconds; sw.Restart();
                var editor = em0.Create(lm, l => stats[l].Matrix);
                var deltas = editor.ComputeDeltas(lm.Tf, [rec]);
                long id = em.Apply(deltas, new EditRecord { Method = editor.Method, Requests = [rec], HyperParametersJson = em0.HparamsJson });
                foreach (int l in deltas.Select(d => d.Layer).Distinct()) lm.Model.SetDownProjection(l, em.ReadDownProjection(l).ToDouble());
                double editSecs = sw.Elapsed.TotalSeconds;
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ROME edit {id}: v* loss {editor.LastOutcome}, {editSecs:0.00} s (key statistics {statsSecs:0.00} s); journaled in {em.JournalPath}"));
                var after = Answers();
                Show("after the edit:", after);

                em.Revert(id);
                var restored = em.ReadDownProjection(layer);
                lm.Model.SetDownProjection(layer, restored.ToDouble());
                var reverted = Answers();
                Show($"after palimpsest revert {id}:", reverted);
                bool exact = original.AsSpan().SequenceEqual(restored.ToFloat());
                io.Out.WriteLine();
                bool took = after[0].Trim().StartsWith(rec.TargetNew, StringComparison.Ordinal);
                bool para = after[1].Trim().StartsWith(rec.TargetNew, StringComparison.Ordinal);
                bool kept = after[2] == before[2];
                bool back = reverted.SequenceEqual(before);
                io.Out.WriteLine($"edit took: {Yes(took)}; paraphrase follows: {Yes(para)}; unrelated fact unchanged: {Yes(kept)}; revert restores the answers: {Yes(back)}, the weights bit for bit: {Yes(exact)}");
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"demo finished in {total.Elapsed.TotalSeconds:0.0} s"));
                return took && back && exact ? CliErrors.Ok : CliErrors.Unexpected;
            }
            finally
            {
                try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
            }
        }));
        return cmd;
    }

    private static string Yes(bool b) => b ? "yes" : "NO";
}
