using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using Palimpsest.Editing;

namespace Palimpsest.Journal;

/// <summary>
/// Older journals brought to <see cref="SchemaVersion"/> when opened for writing, in one transaction:
///   schema 1 had no adaptor edits: the empty table is added;
///   schema 2 had no editor memory and no edits.outcome: the empty table and the column are added;
///   schema 3 kept a LEMoE edit as 13 columns (its sizes and seven float64 arrays): each row becomes
///   the one parts BLOB a LEMoE edit is journaled as now (<see cref="LemoeEdit"/>), with the same arrays.
/// This file is the one place the journal knows the old LEMoE columns.
/// </summary>
internal sealed partial class JournalDb
{
    private void Upgrade(string from) => Guard(() =>
    {
        using var tx = _c.BeginTransaction();
        if (from == "1") Exec(AdaptorSchema, tx);
        else ConvertLemoeColumns(tx);
        if (from is "1" or "2")
        {
            Exec(MemorySchema, tx);
            Exec("ALTER TABLE edits ADD COLUMN outcome TEXT;", tx);
        }
        SetMeta("schema_version", SchemaVersion.ToString(CultureInfo.InvariantCulture), tx);
        tx.Commit();
        return 0;
    });

    // schema 2 and 3's adaptor_edits(edit_id, layer, rank, d_ff, d_model, router_hidden, key_dim,
    // a, b, key, down_before, up_before, down_after, up_after) -> adaptor_edits(edit_id, parts)
    private void ConvertLemoeColumns(SqliteTransaction tx)
    {
        Exec("ALTER TABLE adaptor_edits RENAME TO adaptor_edits_schema3;", tx);
        Exec(AdaptorSchema, tx);
        var rows = new List<(long Id, Models.PartsBlob Parts)>();
        using (var cmd = _c.CreateCommand())
        {
            cmd.Transaction = tx;
            cmd.CommandText = """
                SELECT edit_id, layer, rank, d_ff, d_model, router_hidden, key_dim,
                       a, b, key, down_before, up_before, down_after, up_after
                FROM adaptor_edits_schema3 ORDER BY edit_id
                """;
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                long edit = r.GetInt64(0);
                int layer = r.GetInt32(1), rank = r.GetInt32(2), f = r.GetInt32(3), d = r.GetInt32(4), hid = r.GetInt32(5), k = r.GetInt32(6);
                double[] B(int col, long n) => OldArray((byte[])r.GetValue(col), n, edit, r.GetName(col));
                var expert = new LemoeExpert
                {
                    A = B(7, (long)rank * f), B = B(8, (long)d * rank), Key = B(9, k),
                    RouterDownBefore = B(10, (long)hid * d), RouterUpBefore = B(11, (long)k * hid),
                };
                rows.Add((edit, LemoeEdit.Of(layer, rank, f, d, hid, k, expert, B(12, (long)hid * d), B(13, (long)k * hid))));
            }
        }
        foreach (var (id, parts) in rows) InsertAdaptorParts(id, parts, tx);
        Exec("DROP TABLE adaptor_edits_schema3;", tx);
    }

    private double[] OldArray(byte[] blob, long count, long edit, string column)
    {
        if (blob.LongLength != count * sizeof(double))
            throw new JournalException($"{Path}: edit {edit}: adaptor column '{column}' holds {blob.Length} bytes, its sizes need {count * sizeof(double)}");
        return MemoryMarshal.Cast<byte, double>(blob).ToArray();
    }
}
