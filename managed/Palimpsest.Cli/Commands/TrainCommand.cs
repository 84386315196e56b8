using System.CommandLine;
using System.Globalization;
using System.Text;
using Palimpsest.Backends.Cpu;
using Palimpsest.Evaluation;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;
using Palimpsest.Training;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest train --out DIR [--facts FILE ...] [--world N] [--d-model 128 --layers 4 --heads 4]
/// [--epochs E] [--target-accuracy A] [--seed S]`: trains a GPT-2 (GPT-2 vocabulary) from scratch on
/// facts, each under all but one of its relation's phrasings (the held-out one is the paraphrase
/// test), with AdamW, and writes DIR: config.json, model.safetensors (float16), facts.json,
/// requests.json (the facts as CounterFact-style edit requests), corpus.txt (the training
/// sentences: the key-statistics corpus) and TRAINING.md (the command, every epoch, the accuracy).
/// </summary>
internal static class TrainCommand
{
    public static Command Create(CliIo io)
    {
        var facts = new Option<string[]>("--facts") { Description = "facts file(s) (relations with templates, facts); repeatable", AllowMultipleArgumentsPerToken = true };
        var world = new Option<int>("--world") { Description = "also invent N people with 4 attributes each (a synthetic world)", DefaultValueFactory = _ => 0 };
        var outDir = new Option<string>("--out") { Description = "output model folder", Required = true };
        var dModel = new Option<int>("--d-model") { DefaultValueFactory = _ => 128, Description = "hidden size" };
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => 4, Description = "transformer blocks" };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => 4, Description = "attention heads" };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 60, Description = "at most this many epochs" };
        var target = new Option<double>("--target-accuracy") { DefaultValueFactory = _ => 0.99, Description = "stop once an epoch answers this fraction of the training examples" };
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 2e-3, Description = "peak learning rate" };
        var wd = new Option<double>("--weight-decay") { DefaultValueFactory = _ => 0.1, Description = "AdamW weight decay" };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1, Description = "seed of the initialisation, the held-out phrasings and the order" };
        var variants = new Option<int>("--subject-line-variants") { DefaultValueFactory = _ => 1, Description = "with --subject-lines: 1 (\" subject answer\") or 2 (also the sentence-initial form)" };
        var subjectLines = new Option<bool>("--subject-lines") { Description = "also train \" subject answer\" for every fact, so attributes are stored at the subject (where ROME edits)" };
        var cmd = new Command("train", "train a small GPT-2 on facts (an editable fact model)") { facts, world, outDir, dModel, layers, heads, epochs, target, lr, wd, seed, subjectLines, variants };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var files = new List<FactsFile>();
            try
            {
                foreach (var f in pr.GetValue(facts) ?? []) files.Add(FactsFile.Load(f));
                int n = pr.GetValue(world);
                if (n < 0) throw new CliUsageException($"--world: must be >= 0 (got {n})");
                if (n > 0) files.Add(SyntheticWorld.Create(n, 4, pr.GetValue(seed)));
                if (files.Count == 0) throw new CliUsageException("give --facts FILE and/or --world N: there is nothing to train on");
            }
            catch (FormatException e) { throw new CliUsageException(e.Message); }
            FactsFile all;
            try { all = FactsFile.Merge(files); } catch (FormatException e) { throw new CliUsageException(e.Message); }
            int d = CommonOptions.Positive(pr.GetValue(dModel), "--d-model"), L = CommonOptions.Positive(pr.GetValue(layers), "--layers"), H = CommonOptions.Positive(pr.GetValue(heads), "--heads");
            if (d % H != 0) throw new CliUsageException($"--d-model {d} is not a multiple of --heads {H}");
            string dir = pr.GetValue(outDir)!;
            int s = pr.GetValue(seed);
            var o = new TrainOptions
            {
                MaxEpochs = CommonOptions.Positive(pr.GetValue(epochs), "--epochs"), TargetAccuracy = pr.GetValue(target),
                Lr = pr.GetValue(lr), WeightDecay = pr.GetValue(wd), Seed = s,
            };
            var sw = System.Diagnostics.Stopwatch.StartNew();
            Gpt2Checkpoint.WriteConfig(dir, d, L, H, positions: 128);
            var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
            var tok = TokenizerFactory.Gpt2(config);
            var ex = new FactExamples(all, tok, s, pr.GetValue(subjectLines), pr.GetValue(variants));
            io.Out.WriteLine($"{all.Facts.Count} facts over {all.Relations.Count} relations: {ex.Train.Count} training examples, {ex.HeldOut.Count} held-out phrasings");
            using var backend = new SimdBackend();
            using var model = Model.FromHost(config, FactTrainer.Initialise(config, s), backend);
            using var tf = new Transformer(model);
            var log = new List<EpochStats>();
            new FactTrainer(tf, tok.EosId ?? 50256).Train(ex.Train, o, st =>
            {
                log.Add(st);
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"epoch {st.Epoch,3}: loss {st.Loss:0.0000}  accuracy {st.Accuracy:0.0000}  lr {st.Lr:0.00e0}  {st.Seconds:0.0} s"));
            });
            double trainSecs = sw.Elapsed.TotalSeconds;
            Gpt2Checkpoint.WriteWeights(dir, model, "F16");
            all.Save(Path.Combine(dir, "facts.json"));
            ex.WriteRequests(Path.Combine(dir, "requests.json"));
            ex.WriteCorpus(Path.Combine(dir, "corpus.txt"), tok);

            // what we ship is float16: measure the reloaded model
            using var shipped = Model.Load(dir, backend);
            using var tf2 = new Transformer(shipped);
            var probe = new FactProbe(tf2, tok);
            double Rate(IReadOnlyList<FactExample> xs)
            {
                var pick = xs.Where((_, i) => i % Math.Max(1, xs.Count / 1000) == 0).ToList();
                return pick.Average(e => probe.Answers(tok.Decode(e.Prompt), tok.Decode(e.Answer).TrimStart(' ')) ? 1.0 : 0.0);
            }
            double trainAcc = Rate(ex.Train.Where(e => e.Scored).ToList()), heldAcc = Rate(ex.HeldOut);
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"float16 checkpoint: greedy accuracy {trainAcc:0.000} on training phrasings, {heldAcc:0.000} on held-out phrasings; {trainSecs:0} s"));

            var md = new StringBuilder();
            md.AppendLine($"# {Path.GetFileName(Path.GetFullPath(dir))}");
            md.AppendLine();
            md.AppendLine("Trained by `palimpsest train " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1).SkipWhile(a => a != "train").Skip(1)) + "`.");
            md.AppendLine();
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"GPT-2, d_model {d}, {L} layers, {H} heads, d_ff {4 * d}, 128 positions, GPT-2 vocabulary, tied embeddings, float16 weights."));
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{all.Facts.Count} facts over {all.Relations.Count} relations; {ex.Train.Count} training examples (each fact under all but one phrasing of its relation), {ex.HeldOut.Count} held-out phrasings (one per fact, never trained)."));
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"Loss on the answer tokens and the EOS after them; examples packed into {o.PackLength}-token sequences, {o.BatchSequences} per step; AdamW lr {o.Lr} (warm-up {o.WarmupSteps} steps, cosine to {o.MinLrFraction}x), weight decay {o.WeightDecay}, clip {o.ClipNorm}; stop at epoch accuracy >= {o.TargetAccuracy}."));
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"Training took {trainSecs:0} s on {Environment.ProcessorCount} cores."));
            md.AppendLine();
            md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"Greedy exact match of the float16 checkpoint: **{trainAcc:0.000}** on training phrasings, **{heldAcc:0.000}** on held-out phrasings (up to 1,000 sampled of each)."));
            md.AppendLine();
            md.AppendLine("| epoch | loss | accuracy | lr | seconds |");
            md.AppendLine("|---:|---:|---:|---:|---:|");
            foreach (var st in log) md.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {st.Epoch} | {st.Loss:0.0000} | {st.Accuracy:0.0000} | {st.Lr:0.00e0} | {st.Seconds:0.0} |"));
            AtomicFile.WriteAllText(Path.Combine(dir, "TRAINING.md"), md.ToString());
            io.Out.WriteLine($"wrote {dir}: config.json, model.safetensors, facts.json, requests.json, corpus.txt, TRAINING.md");
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
