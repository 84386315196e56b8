using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using Palimpsest.Editing;
using Palimpsest.Models;

namespace Palimpsest.Journal;

/// <summary>A delta as stored: which edit, its position in that edit, and the checkpoint tensor it changes.</summary>
internal sealed record StoredDelta(long EditId, int Index, string Tensor, WeightDelta Delta);

/// <summary>
/// The SQLite journal (edits.sqlite). Tables:
///   meta(key, value)    schema_version, generation (the committed checkpoint generation), source, created_utc
///   edits(id, ...)      one row per applied edit; reverted_utc set when reverted (rows are never deleted)
///   deltas(edit_id, idx, layer, tensor, rank, key_dim, value_dim, left, right)
///                       the exact low-rank factors, float64 little-endian BLOBs
///   adaptor_edits(edit_id, parts)
///                       an edit that adds to the folder's adaptor instead of changing weights (LEMoE's
///                       expert and router): its arrays as one <see cref="PartsBlob"/>, which the journal
///                       does not interpret; the adaptor file is rebuilt from the active ones (schema 2;
///                       one BLOB since schema 4)
///   edits.outcome       what the editor saw after the edit when it did not take (schema 3), else null
///   editor_memory(edit_id, name, value)
///                       what an edit added to its editor's memory beyond the weights (UltraEdit's normaliser
///                       moments), float64 BLOBs by name; a reopened folder's editor rebuilds its memory from
///                       the active edits' (schema 3)
/// An older journal is brought to this schema when opened for writing (JournalDb.Migrations.cs).
/// synchronous=FULL: a commit is on disk when Commit() returns, which the protocol in
/// <see cref="EditedModel"/> relies on.
/// </summary>
internal sealed partial class JournalDb : IDisposable
{
    public const int SchemaVersion = 4;

    private const string Schema = """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE edits(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_utc TEXT NOT NULL,
            method TEXT NOT NULL,
            subject TEXT NOT NULL,
            target TEXT NOT NULL,
            layers TEXT NOT NULL,
            delta_norm REAL NOT NULL,
            content_hash TEXT NOT NULL,
            generation INTEGER NOT NULL,
            requests_json TEXT NOT NULL,
            hparams_json TEXT NOT NULL,
            reverted_utc TEXT,
            reverted_generation INTEGER,
            outcome TEXT);
        CREATE TABLE deltas(
            edit_id INTEGER NOT NULL REFERENCES edits(id),
            idx INTEGER NOT NULL,
            layer INTEGER NOT NULL,
            tensor TEXT NOT NULL,
            rank INTEGER NOT NULL,
            key_dim INTEGER NOT NULL,
            value_dim INTEGER NOT NULL,
            left BLOB NOT NULL,
            right BLOB NOT NULL,
            PRIMARY KEY(edit_id, idx));
        """ + AdaptorSchema + MemorySchema;

    private const string MemorySchema = """
        CREATE TABLE editor_memory(
            edit_id INTEGER NOT NULL REFERENCES edits(id),
            name TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY(edit_id, name));
        """;

    private const string AdaptorSchema = """
        CREATE TABLE adaptor_edits(
            edit_id INTEGER PRIMARY KEY REFERENCES edits(id),
            parts BLOB NOT NULL);
        """;

    private readonly SqliteConnection _c;

    private JournalDb(string path, SqliteConnection c) { Path = path; _c = c; }

    public string Path { get; }

    public static JournalDb Create(string path, IReadOnlyDictionary<string, string> meta)
    {
        if (File.Exists(path)) throw new JournalException($"{path}: journal already exists");
        var db = new JournalDb(path, Connect(path, SqliteOpenMode.ReadWriteCreate));
        try
        {
            db.Guard(() =>
            {
                using var tx = db._c.BeginTransaction();
                db.Exec(Schema, tx);
                db.SetMeta("schema_version", SchemaVersion.ToString(CultureInfo.InvariantCulture), tx);
                db.SetMeta("generation", "0", tx);
                foreach (var (k, v) in meta) db.SetMeta(k, v, tx);
                tx.Commit();
                return 0;
            });
            return db;
        }
        catch { db.Dispose(); throw; }
    }

    public static JournalDb Open(string path)
    {
        if (!File.Exists(path)) throw new JournalException($"{path}: journal not found (not an edited-model folder?)");
        var db = new JournalDb(path, Connect(path, SqliteOpenMode.ReadWrite));
        try
        {
            string? v = db.Guard(() => db.Meta("schema_version"));
            if (v is "1" or "2" or "3")
            {
                db.Upgrade(v);
                v = SchemaVersion.ToString(CultureInfo.InvariantCulture);
            }
            if (v != SchemaVersion.ToString(CultureInfo.InvariantCulture))
                throw new JournalException($"{path}: journal schema_version is {v ?? "missing"}, this build reads {SchemaVersion}");
            _ = db.Generation;
            return db;
        }
        catch { db.Dispose(); throw; }
    }

    /// <summary>Every edit, read without writing anything and without the folder's lock (a reader beside a running editor).</summary>
    public static (List<JournalEntry> Entries, long Generation) ReadOnly(string path)
    {
        var db = new JournalDb(path, Connect(path, SqliteOpenMode.ReadOnly));
        using (db)
        {
            string? v = db.Meta("schema_version");
            // schema 3 differs only in adaptor_edits, which this read does not touch
            if (v != SchemaVersion.ToString(CultureInfo.InvariantCulture) && v != "3")
                throw new JournalException($"{path}: journal schema_version is {v ?? "missing"}; it is brought to {SchemaVersion} the next time the folder is opened for writing");
            return (db.Entries(), db.Generation);
        }
    }

    /// <summary>The committed checkpoint generation, read without writing anything (a reader beside a running editor).</summary>
    public static long ReadGeneration(string path)
    {
        using var c = Connect(path, SqliteOpenMode.ReadOnly);
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT value FROM meta WHERE key = 'generation'";
        try
        {
            return cmd.ExecuteScalar() is string v && long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long g) ? g
                : throw new JournalException($"{path}: meta 'generation' is missing or not a number");
        }
        catch (SqliteException e) { throw Malformed(path, e); }
    }

    private static SqliteConnection Connect(string path, SqliteOpenMode mode)
    {
        // Pooling off: a pooled connection would keep the file open after Dispose (tests delete folders;
        // a killed-and-reopened journal must not see a stale handle).
        var cs = new SqliteConnectionStringBuilder { DataSource = path, Mode = mode, Pooling = false }.ToString();
        var c = new SqliteConnection(cs);
        try
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;";
            cmd.ExecuteNonQuery();
            return c;
        }
        catch (SqliteException e) { c.Dispose(); throw Malformed(path, e); }
    }

    private static JournalException Malformed(string path, SqliteException e) =>
        new($"{path}: not a valid Palimpsest journal (SQLite: {e.Message.Split('\n')[0].Replace("SQLite Error ", "").TrimEnd('\r')})");

    /// <summary>Runs a query, turning SQLite errors (corrupt file, missing table) into one-line journal errors.</summary>
    private T Guard<T>(Func<T> f)
    {
        try { return f(); }
        catch (SqliteException e) { throw Malformed(Path, e); }
    }

    /// <summary>The committed checkpoint generation.</summary>
    public long Generation =>
        long.TryParse(Guard(() => Meta("generation")), NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g
            : throw new JournalException($"{Path}: meta 'generation' is missing or not a number");

    public string? Meta(string key)
    {
        using var cmd = _c.CreateCommand();
        cmd.CommandText = "SELECT value FROM meta WHERE key = $k";
        cmd.Parameters.AddWithValue("$k", key);
        return Guard(() => cmd.ExecuteScalar() as string);
    }

    private void SetMeta(string key, string value, SqliteTransaction tx)
    {
        using var cmd = _c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "INSERT INTO meta(key, value) VALUES($k, $v) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
        cmd.Parameters.AddWithValue("$k", key);
        cmd.Parameters.AddWithValue("$v", value);
        cmd.ExecuteNonQuery();
    }

    private void Exec(string sql, SqliteTransaction tx)
    {
        using var cmd = _c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    /// <summary>The edit row plus its deltas plus the new generation, in ONE transaction. Returns the edit id.</summary>
    public long InsertEdit(EditRow row, IReadOnlyList<(string Tensor, WeightDelta Delta)> deltas, long generation,
        IReadOnlyDictionary<string, double[]>? memory = null) => Guard(() =>
    {
        using var tx = _c.BeginTransaction();
        long id = InsertEditRow(row, generation, tx);
        foreach (var (name, value) in memory ?? new Dictionary<string, double[]>())
        {
            using var cmd = _c.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = "INSERT INTO editor_memory(edit_id, name, value) VALUES($e, $n, $v)";
            cmd.Parameters.AddWithValue("$e", id);
            cmd.Parameters.AddWithValue("$n", name);
            cmd.Parameters.AddWithValue("$v", MemoryMarshal.AsBytes(value.AsSpan()).ToArray());
            cmd.ExecuteNonQuery();
        }
        for (int i = 0; i < deltas.Count; i++)
        {
            var (tensor, d) = deltas[i];
            using var cmd = _c.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = """
                INSERT INTO deltas(edit_id, idx, layer, tensor, rank, key_dim, value_dim, left, right)
                VALUES($e, $i, $layer, $t, $r, $k, $v, $left, $right)
                """;
            cmd.Parameters.AddWithValue("$e", id);
            cmd.Parameters.AddWithValue("$i", i);
            cmd.Parameters.AddWithValue("$layer", d.Layer);
            cmd.Parameters.AddWithValue("$t", tensor);
            cmd.Parameters.AddWithValue("$r", d.Rank);
            cmd.Parameters.AddWithValue("$k", d.KeyDim);
            cmd.Parameters.AddWithValue("$v", d.ValueDim);
            cmd.Parameters.AddWithValue("$left", MemoryMarshal.AsBytes(d.Left.AsSpan()).ToArray());
            cmd.Parameters.AddWithValue("$right", MemoryMarshal.AsBytes(d.Right.AsSpan()).ToArray());
            cmd.ExecuteNonQuery();
        }
        SetMeta("generation", generation.ToString(CultureInfo.InvariantCulture), tx);
        tx.Commit();
        return id;
    });

    /// <summary>The committed generation of the adaptor file (0: no adaptor edit was ever made).</summary>
    public long AdaptorGeneration =>
        Guard(() => Meta("adaptor_generation")) is not { } s ? 0
        : long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g
        : throw new JournalException($"{Path}: meta 'adaptor_generation' is not a number");

    /// <summary>
    /// An adaptor edit: the edit row (its generation column holds the unchanged checkpoint generation),
    /// its parts, and the new adaptor generation, in ONE transaction. Returns the edit id.
    /// </summary>
    public long InsertAdaptorEdit(EditRow row, PartsBlob parts, long checkpointGeneration, long adaptorGeneration) => Guard(() =>
    {
        using var tx = _c.BeginTransaction();
        long id = InsertEditRow(row, checkpointGeneration, tx);
        InsertAdaptorParts(id, parts, tx);
        SetMeta("adaptor_generation", adaptorGeneration.ToString(CultureInfo.InvariantCulture), tx);
        tx.Commit();
        return id;
    });

    private void InsertAdaptorParts(long id, PartsBlob parts, SqliteTransaction tx)
    {
        using var cmd = _c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "INSERT INTO adaptor_edits(edit_id, parts) VALUES($e, $p)";
        cmd.Parameters.AddWithValue("$e", id);
        cmd.Parameters.AddWithValue("$p", parts.ToBytes());
        cmd.ExecuteNonQuery();
    }

    // the edits row of an apply (generation: the checkpoint generation it leaves); returns its id
    private long InsertEditRow(EditRow row, long generation, SqliteTransaction tx)
    {
        using var cmd = _c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = """
            INSERT INTO edits(created_utc, method, subject, target, layers, delta_norm, content_hash, generation, requests_json, hparams_json)
            VALUES($t, $m, $s, $g, $l, $n, $h, $gen, $rq, $hp) RETURNING id
            """;
        cmd.Parameters.AddWithValue("$t", row.Time.UtcDateTime.ToString("O", CultureInfo.InvariantCulture));
        cmd.Parameters.AddWithValue("$m", row.Method);
        cmd.Parameters.AddWithValue("$s", row.Subject);
        cmd.Parameters.AddWithValue("$g", row.Target);
        cmd.Parameters.AddWithValue("$l", string.Join(",", row.Layers));
        cmd.Parameters.AddWithValue("$n", row.DeltaNorm);
        cmd.Parameters.AddWithValue("$h", row.ContentHash);
        cmd.Parameters.AddWithValue("$gen", generation);
        cmd.Parameters.AddWithValue("$rq", row.RequestsJson);
        cmd.Parameters.AddWithValue("$hp", row.HyperParametersJson);
        return (long)cmd.ExecuteScalar()!;
    }

    // marks an active edit reverted at revertedGeneration (the checkpoint generation after the revert)
    private void MarkRevertedRow(long id, DateTimeOffset time, long revertedGeneration, SqliteTransaction tx)
    {
        using var cmd = _c.CreateCommand();
        cmd.Transaction = tx;
        cmd.CommandText = "UPDATE edits SET reverted_utc = $t, reverted_generation = $gen WHERE id = $id AND reverted_utc IS NULL";
        cmd.Parameters.AddWithValue("$t", time.UtcDateTime.ToString("O", CultureInfo.InvariantCulture));
        cmd.Parameters.AddWithValue("$gen", revertedGeneration);
        cmd.Parameters.AddWithValue("$id", id);
        if (cmd.ExecuteNonQuery() != 1) throw new InvalidOperationException($"{Path}: edit {id} is not an active edit");
    }

    /// <summary>Marks an adaptor edit reverted and moves to the new adaptor generation, in one transaction.</summary>
    public void MarkAdaptorReverted(long id, DateTimeOffset time, long adaptorGeneration) => Guard(() =>
    {
        using var tx = _c.BeginTransaction();
        MarkRevertedRow(id, time, Generation, tx);
        SetMeta("adaptor_generation", adaptorGeneration.ToString(CultureInfo.InvariantCulture), tx);
        tx.Commit();
        return 0;
    });

    /// <summary>Adaptor edits' parts ordered by edit id; activeOnly: skip reverted ones.</summary>
    public List<(long EditId, PartsBlob Parts)> AdaptorEdits(bool activeOnly) => Guard(() =>
    {
        using var cmd = _c.CreateCommand();
        cmd.CommandText = """
            SELECT a.edit_id, a.parts FROM adaptor_edits a JOIN edits e ON e.id = a.edit_id
            WHERE $active = 0 OR e.reverted_utc IS NULL
            ORDER BY a.edit_id
            """;
        cmd.Parameters.AddWithValue("$active", activeOnly ? 1 : 0);
        using var r = cmd.ExecuteReader();
        var list = new List<(long, PartsBlob)>();
        while (r.Read())
        {
            long edit = r.GetInt64(0);
            try { list.Add((edit, PartsBlob.FromBytes((byte[])r.GetValue(1), $"{Path}: edit {edit}'s adaptor parts"))); }
            catch (ModelFormatException e) { throw new JournalException(e.Message); }
        }
        return list;
    });

    /// <summary>Marks an edit reverted and moves to the new generation, in one transaction.</summary>
    public void MarkReverted(long id, DateTimeOffset time, long generation) => Guard(() =>
    {
        using var tx = _c.BeginTransaction();
        MarkRevertedRow(id, time, generation, tx);
        SetMeta("generation", generation.ToString(CultureInfo.InvariantCulture), tx);
        tx.Commit();
        return 0;
    });

    public List<JournalEntry> Entries(long? onlyId = null) => Guard(() =>
    {
        using var cmd = _c.CreateCommand();
        cmd.CommandText = """
            SELECT id, created_utc, method, subject, target, layers, delta_norm, reverted_utc, content_hash, generation, requests_json, hparams_json, outcome
            FROM edits WHERE $id IS NULL OR id = $id ORDER BY id
            """;
        cmd.Parameters.AddWithValue("$id", (object?)onlyId ?? DBNull.Value);
        using var r = cmd.ExecuteReader();
        var list = new List<JournalEntry>();
        while (r.Read())
        {
            string layers = r.GetString(5);
            list.Add(new JournalEntry(
                r.GetInt64(0), ParseTime(r.GetString(1)), r.GetString(2), r.GetString(3), r.GetString(4),
                layers.Length == 0 ? [] : layers.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray(),
                r.GetDouble(6), r.IsDBNull(7) ? null : ParseTime(r.GetString(7)), r.GetString(8), r.GetInt64(9),
                r.GetString(10), r.GetString(11), r.IsDBNull(12) ? null : r.GetString(12)));
        }
        return list;
    });

    private static DateTimeOffset ParseTime(string s) =>
        DateTimeOffset.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal);

    /// <summary>Deltas ordered by (edit id, idx) — the fixed order in which weights are recomposed.
    /// activeOnly: skip reverted edits; editId: only that edit's deltas.</summary>
    public List<StoredDelta> Deltas(bool activeOnly, long? editId = null) => Guard(() =>
    {
        using var cmd = _c.CreateCommand();
        cmd.CommandText = """
            SELECT d.edit_id, d.idx, d.layer, d.tensor, d.rank, d.key_dim, d.value_dim, d.left, d.right
            FROM deltas d JOIN edits e ON e.id = d.edit_id
            WHERE ($active = 0 OR e.reverted_utc IS NULL) AND ($id IS NULL OR d.edit_id = $id)
            ORDER BY d.edit_id, d.idx
            """;
        cmd.Parameters.AddWithValue("$active", activeOnly ? 1 : 0);
        cmd.Parameters.AddWithValue("$id", (object?)editId ?? DBNull.Value);
        using var r = cmd.ExecuteReader();
        var list = new List<StoredDelta>();
        while (r.Read())
        {
            long edit = r.GetInt64(0);
            int rank = r.GetInt32(4), k = r.GetInt32(5), v = r.GetInt32(6);
            var left = Doubles((byte[])r.GetValue(7), (long)rank * k, edit);
            var right = Doubles((byte[])r.GetValue(8), (long)rank * v, edit);
            list.Add(new StoredDelta(edit, r.GetInt32(1), r.GetString(3), new WeightDelta(r.GetInt32(2), rank, left, right)));
        }
        return list;
    });

    private double[] Doubles(byte[] blob, long count, long edit)
    {
        if (blob.LongLength != count * sizeof(double))
            throw new JournalException($"{Path}: edit {edit}: a delta factor holds {blob.Length} bytes, its rank and shape need {count * sizeof(double)}");
        return MemoryMarshal.Cast<byte, double>(blob).ToArray();
    }

    /// <summary>Every tensor any edit (active or reverted) ever changed.</summary>
    public HashSet<string> TouchedTensors() => Guard(() =>
    {
        using var cmd = _c.CreateCommand();
        cmd.CommandText = "SELECT DISTINCT tensor FROM deltas";
        using var r = cmd.ExecuteReader();
        var set = new HashSet<string>(StringComparer.Ordinal);
        while (r.Read()) set.Add(r.GetString(0));
        return set;
    });

    /// <summary>Records what was seen after an edit (a warning that it did not take); null clears it.</summary>
    public void SetOutcome(long id, string? outcome) => Guard(() =>
    {
        using var cmd = _c.CreateCommand();
        cmd.CommandText = "UPDATE edits SET outcome = $o WHERE id = $id";
        cmd.Parameters.AddWithValue("$o", (object?)outcome ?? DBNull.Value);
        cmd.Parameters.AddWithValue("$id", id);
        return cmd.ExecuteNonQuery() == 1 ? 0 : throw new ArgumentException($"{Path}: edit {id} not found");
    });

    /// <summary>The memory an edit journaled for its editor (empty when none), by name.</summary>
    public Dictionary<string, double[]> EditorMemory(long editId) => Guard(() =>
    {
        using var cmd = _c.CreateCommand();
        cmd.CommandText = "SELECT name, value FROM editor_memory WHERE edit_id = $e ORDER BY name";
        cmd.Parameters.AddWithValue("$e", editId);
        using var r = cmd.ExecuteReader();
        var d = new Dictionary<string, double[]>();
        while (r.Read())
        {
            var bytes = (byte[])r.GetValue(1);
            if (bytes.Length % 8 != 0) throw new JournalException($"{Path}: edit {editId}'s editor memory '{r.GetString(0)}' is {bytes.Length} bytes, not float64 values");
            d[r.GetString(0)] = MemoryMarshal.Cast<byte, double>(bytes).ToArray();
        }
        return d;
    });

    public void Dispose() => _c.Dispose();
}

/// <summary>The descriptive columns of an edits row.</summary>
internal sealed record EditRow(
    DateTimeOffset Time, string Method, string Subject, string Target, IReadOnlyList<int> Layers,
    double DeltaNorm, string ContentHash, string RequestsJson, string HyperParametersJson);
