using Microsoft.Data.Sqlite;
using Palimpsest.Backends.Cpu;
using Palimpsest.Journal;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Cli;

namespace Palimpsest.Tests.Journal;

/// <summary>
/// A schema-3 journal, where a LEMoE edit was 13 columns (its sizes and seven arrays), opened by this
/// build, which keeps it as one parts BLOB. tests/fixtures/journal-schema3 was written by the code of
/// commit 1d91277 (see its README): LEMoE edit 1, edit 2, edit 2 reverted, edit 3, on a
/// <see cref="TinyGpt2Folder"/>; with it the lemoe.safetensors that code wrote after edit 1 and at the end.
/// </summary>
public class JournalMigrationTests
{
    private static string Fixture(string name) => Path.Combine(Paths.Fixture("journal-schema3"), name);

    private static string Scalar(string journal, string sql)
    {
        using var c = new SqliteConnection($"Data Source={journal};Pooling=False");
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        return Convert.ToString(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture)!;
    }

    // every tensor of a safetensors file by name
    private static Dictionary<string, double[]> Tensors(string path)
    {
        using var f = SafetensorsFile.Open(path);
        return f.Tensors.Keys.ToDictionary(n => n, f.ReadF64);
    }

    [Fact]
    public void A_schema_3_journal_opens_with_its_lemoe_edits_and_rebuilds_the_same_adaptor()
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        EditedModel.Create(m.Model, dir).Dispose();
        string journal = Path.Combine(dir, EditedModel.JournalFile);
        File.Copy(Fixture(EditedModel.JournalFile), journal, overwrite: true);
        Assert.Equal("3", Scalar(journal, "SELECT value FROM meta WHERE key = 'schema_version'"));
        // a reader without the lock reads the old journal as it is
        var (before, _) = EditedModel.ReadJournal(dir);
        Assert.Equal(3, before.Count);

        using (var em = EditedModel.Open(dir))
        {
            // the adaptor rebuilt from the migrated journal is the file the old code wrote, byte for byte
            Assert.Contains("rebuilt adaptor generation 4", em.Recovery);
            Assert.Equal(File.ReadAllBytes(Fixture(EditedModel.AdaptorFile)), File.ReadAllBytes(em.AdaptorPath));
            Assert.Equal(before.Select(e => (e.Id, e.ContentHash, e.Reverted)), em.List().Select(e => (e.Id, e.ContentHash, e.Reverted)));
            Assert.Equal(4, em.AdaptorGeneration);

            // and it goes on: reverting the newest leaves what the old code had after edit 1
            em.Revert(before[^1].Id);
            var afterEdit1 = Tensors(Fixture("lemoe-after-edit-1.safetensors"));
            var now = Tensors(em.AdaptorPath);
            Assert.Equal(afterEdit1.Keys.Order(), now.Keys.Order());
            foreach (var (name, values) in afterEdit1) Assert.Equal(values, now[name]);
        }
        Assert.Equal(JournalDb.SchemaVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Scalar(journal, "SELECT value FROM meta WHERE key = 'schema_version'"));
        Assert.Equal("edit_id,parts", Scalar(journal, "SELECT group_concat(name) FROM pragma_table_info('adaptor_edits')"));

        // the folder's adaptor loads onto its model
        using var backend = new ReferenceBackend();
        using var model = Model.Load(m.Model, backend);
        Assert.Single(EditedModel.LoadAdaptor(dir, model)!.Experts);
    }
}
