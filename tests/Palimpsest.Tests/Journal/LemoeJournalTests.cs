using Microsoft.Data.Sqlite;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Journal;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Cli;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Journal;

/// <summary>
/// LEMoE edits in an edited-model folder: journaled with their expert and router, lemoe.safetensors
/// rebuilt from the journal, reverted newest first bit for bit, recovered after a crash at each
/// protocol step, and a schema-1 journal opened as schema 2.
/// </summary>
public class LemoeJournalTests
{
    private static readonly EditRequest[] Batch1 =
    [
        new() { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English" },
    ];
    private static readonly EditRequest[] Batch2 =
    [
        new() { Subject = "Edwin of Northumbria", Prompt = "The official religion of {} is", TargetNew = "Islam" },
    ];
    private static readonly int[] Probe = [464, 2802, 11880, 286, 24422, 7491, 380, 2821, 318];

    private static LemoeHparams Hp => new() { Layer = 1, ExpertRank = 4, RouterHidden = 6, KeyDim = 5, Lr = 0.02, Steps = 8, EarlyStopLoss = 0 };

    /// <summary>The folder's weights (and its adaptor, if any) on the float64 reference.</summary>
    private sealed class Loaded : IDisposable
    {
        public Loaded(string dir)
        {
            B = new ReferenceBackend();
            M = Model.Load(dir, B);
            Tf = new Transformer(M) { Adaptor = EditedModel.LoadAdaptor(dir, M) };
            Tok = TokenizerFactory.Gpt2(M.Config);
        }
        public ReferenceBackend B { get; }
        public Model M { get; }
        public Transformer Tf { get; }
        public ITextTokenizer Tok { get; }

        public double[] Logits()
        {
            using var r = Tf.Forward(Probe);
            var h = new double[r.Logits.Length];
            B.ToHost(r.Logits, h);
            return h;
        }

        public void Dispose() { Tf.Dispose(); M.Dispose(); B.Dispose(); }
    }

    private static long Edit(EditedModel em, Loaded lm, EditRequest[] batch)
    {
        new Lemoe(Hp, lm.Tok).Edit(lm.Tf, batch);
        var adaptor = Lemoe.AdaptorOf(lm.Tf, Hp);
        return em.ApplyAdaptor(adaptor, Hp, new EditRecord { Method = "lemoe", Requests = batch, HyperParametersJson = Hp.ToJson() });
    }

    private static double[] LogitsOf(string dir)
    {
        using var lm = new Loaded(dir);
        return lm.Logits();
    }

    [Fact]
    public void Lemoe_edits_are_journaled_and_reverted_newest_first_bit_for_bit()
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        var original = LogitsOf(m.Model);
        using (var em = EditedModel.Create(m.Model, dir))
        {
            var checkpoint = JournalFixtures.RawTensors(em.CheckpointPath);
            double[] after1, after2;
            long id1, id2;
            using (var lm = new Loaded(dir))
            {
                Assert.Null(lm.Tf.Adaptor);
                id1 = Edit(em, lm, Batch1);
                after1 = lm.Logits();
                id2 = Edit(em, lm, Batch2);
                after2 = lm.Logits();
            }
            Assert.NotEqual(original, after1);
            Assert.NotEqual(after1, after2);
            // the file rebuilt from the journal is the adaptor the edits trained
            Assert.Equal(after2, LogitsOf(dir));
            Assert.Equal(2, em.AdaptorGeneration);
            Assert.Equal(0, em.Generation); // no weight changed
            var entries = em.List();
            Assert.Equal(["lemoe", "lemoe"], entries.Select(e => e.Method));
            Assert.All(entries, e => Assert.Equal([Hp.Layer], e.Layers));
            Assert.All(entries, e => Assert.True(e.DeltaNorm > 0));

            // the router of edit 2 was trained with edit 1's expert present: only the newest goes first
            var older = Assert.Throws<InvalidOperationException>(() => em.Revert(id1));
            Assert.Contains("newest", older.Message);

            em.Revert(id2);
            Assert.Equal(after1, LogitsOf(dir));
            em.Revert(id1);
            Assert.False(File.Exists(em.AdaptorPath));
            Assert.Equal(original, LogitsOf(dir));
            Assert.Empty(JournalFixtures.Differences(checkpoint, JournalFixtures.RawTensors(em.CheckpointPath)));
        }
        using var reopened = EditedModel.Open(dir);
        Assert.Null(reopened.Recovery);
        Assert.Equal(4, reopened.AdaptorGeneration);
    }

    [Fact]
    public void An_edit_after_a_revert_trains_on_the_remaining_adaptor()
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        using var em = EditedModel.Create(m.Model, dir);
        double[] after1;
        using (var lm = new Loaded(dir)) { Edit(em, lm, Batch1); after1 = lm.Logits(); }
        long id2;
        using (var lm = new Loaded(dir)) id2 = Edit(em, lm, Batch2);
        em.Revert(id2);
        long id3;
        using (var lm = new Loaded(dir))
        {
            Assert.Equal(after1, lm.Logits());
            id3 = Edit(em, lm, Batch2);
        }
        using (var plain = new Loaded(m.Model)) Assert.Equal(2, EditedModel.LoadAdaptor(dir, plain.M)!.Experts.Count);
        em.Revert(id3);
        Assert.Equal(after1, LogitsOf(dir));
        // an adaptor that does not extend the folder's (a fresh one) is refused
        using var fresh = new Loaded(m.Model);
        new Lemoe(Hp, fresh.Tok).Edit(fresh.Tf, Batch2);
        var e = Assert.Throws<ArgumentException>(() => em.ApplyAdaptor(Lemoe.AdaptorOf(fresh.Tf, Hp), Hp, new EditRecord { Method = "lemoe", Requests = Batch2 }));
        Assert.Contains("expert", e.Message);
    }

    [Theory]
    [InlineData("pending-written", false)] // before the commit: the edit did not happen
    [InlineData("committed", true)]        // after it: Open renames the pending file into place
    public void A_crash_during_a_lemoe_apply_leaves_the_old_or_the_new_adaptor(string step, bool expectNew)
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        double[] before, trained;
        using (var em = EditedModel.Create(m.Model, dir))
        {
            using (var lm = new Loaded(dir)) { Edit(em, lm, Batch1); before = lm.Logits(); }
            using var lm2 = new Loaded(dir);
            em.StepHook = s => { if (s == step) throw new IOException($"crash at {s}"); };
            Assert.Throws<IOException>(() => Edit(em, lm2, Batch2));
            trained = lm2.Logits();
        }
        using var reopened = EditedModel.Open(dir);
        Assert.NotNull(reopened.Recovery);
        Assert.Equal(expectNew ? 2 : 1, reopened.List().Count);
        Assert.Equal(expectNew ? trained : before, LogitsOf(dir));
        Assert.Empty(Directory.EnumerateFiles(dir, "*.pending-*"));
    }

    [Fact]
    public void A_lost_adaptor_file_is_rebuilt_from_the_journal_and_a_stale_one_removed()
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        double[] after;
        long id;
        using (var em = EditedModel.Create(m.Model, dir))
        using (var lm = new Loaded(dir)) { id = Edit(em, lm, Batch1); after = lm.Logits(); }
        File.Delete(Path.Combine(dir, EditedModel.AdaptorFile));
        using (var em = EditedModel.Open(dir))
        {
            Assert.Contains("adaptor generation 1", em.Recovery);
            em.StepHook = s => { if (s == "committed") throw new IOException("crash after the revert's commit"); };
            Assert.Throws<IOException>(() => em.Revert(id));
        }
        Assert.Equal(after, LogitsOf(dir)); // the file is still there until Open settles it
        using (var em = EditedModel.Open(dir)) Assert.Contains("removed lemoe.safetensors", em.Recovery);
        Assert.False(File.Exists(Path.Combine(dir, EditedModel.AdaptorFile)));
    }

    [Fact]
    public void A_schema_1_journal_opens_as_schema_3_with_its_edits()
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        using (var em = EditedModel.Create(m.Model, dir)) em.Apply([JournalFixtures.RandomDelta(3, 1, layers: 3, f: 24, d: 16)], JournalFixtures.Record(3));
        using (var c = new SqliteConnection($"Data Source={Path.Combine(dir, EditedModel.JournalFile)};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "DROP TABLE adaptor_edits; DROP TABLE editor_memory; ALTER TABLE edits DROP COLUMN outcome; UPDATE meta SET value = '1' WHERE key = 'schema_version';";
            cmd.ExecuteNonQuery();
        }
        using var reopened = EditedModel.Open(dir);
        Assert.Single(reopened.List());
        Assert.Equal(0, reopened.AdaptorGeneration);
        using var lm = new Loaded(dir);
        Edit(reopened, lm, Batch1); // the adaptor table exists now
        Assert.Equal(2, reopened.List().Count);
    }
}
