using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Journal;

/// <summary>
/// An edited model folder: a normal Hugging Face folder (config.json, tokenizer files,
/// model.safetensors with the source's tensor names and dtypes) plus
///   edits.sqlite          the journal (<see cref="JournalDb"/>): every edit with its exact low-rank deltas
///   masters.safetensors   the ORIGINAL value of every matrix any edit touched, float32 (float64 for F64
///                         checkpoints) — exact for F32/F16/BF16 originals
///   edits.lock            held while the folder is open, so two processes never edit it at once.
///   lemoe.safetensors     the LEMoE adaptor, when the folder has active LEMoE edits: rebuilt from the
///                         journal's adaptor_edits (experts in edit order, the newest edit's router)
///
/// Weights are never updated incrementally: an edited matrix is always recomposed as
///   W = round_to_dtype( original + Σ over active deltas, in (edit id, delta index) order, in float64 ),
/// so the result depends only on the set of active edits. Reverting every edit, in any order,
/// therefore gives back the original bits, and replaying the journal reproduces the checkpoint.
///
/// Crash-safety protocol. model.safetensors carries its generation number in its header metadata
/// ("palimpsest.generation"); the journal's meta table holds the committed generation G. A change
/// (apply or revert) to generation G+1 goes:
///   1. masters: if a matrix is edited for the first time, add its original (read from the current
///      checkpoint, which still holds it) to masters.safetensors by temp file + fsync + rename +
///      folder fsync. Adding an original never changes the meaning of the folder, so a crash after
///      this step leaves the old state (with a harmless extra master).
///   2. write the new checkpoint to model.safetensors.pending-{G+1} (temp + fsync + rename + folder
///      fsync). A crash here leaves the old state plus a stray file.
///   3. ONE SQLite transaction: the edit row and its delta BLOBs (or the revert mark) and
///      generation = G+1. This commit is the moment the change happens.
///   4. rename the pending file over model.safetensors, fsync the folder.
/// (Steps 2-4 and the recovery below are <see cref="DurableFile"/>'s, which serves both files.)
/// Open() recovers: if the checkpoint's generation differs from the journal's, the journal wins —
/// the pending file of the journal's generation is renamed into place (crash between 3 and 4), or,
/// if it is missing, every mastered matrix is recomposed from masters + journal and written the same
/// way. Stray pending files of an uncommitted generation (crash before 3) and temp files are
/// deleted. So a kill at any moment leaves the old or the new state, never a mix.
///
/// LEMoE edits change no weight: they follow the same protocol for lemoe.safetensors, with their own
/// generation (meta adaptor_generation, "palimpsest.adaptor_generation" in the file's header): the
/// file for the next adaptor generation is written as lemoe.safetensors.pending-{A+1}, the edit (or
/// its revert) is committed together with A+1, then the file is renamed into place (or deleted when
/// no LEMoE edit stays active). Open brings the file to the committed adaptor generation the same way.
/// Only the newest active LEMoE edit can be reverted: the router every later expert was trained
/// with includes the earlier experts, so removing the newest is the one exact undo.
/// </summary>
public sealed class EditedModel : IDisposable
{
    public const string CheckpointFile = "model.safetensors";
    public const string JournalFile = "edits.sqlite";
    public const string MastersFile = "masters.safetensors";
    public const string LockFile = "edits.lock";
    public const string AdaptorFile = "lemoe.safetensors";

    private readonly JournalDb _db;
    private readonly FileStream _lock;
    private readonly bool _prefixed;
    private readonly DurableFile _checkpoint, _adaptor;

    private EditedModel(string dir, ModelConfig config, JournalDb db, FileStream lockFile, bool prefixed)
    {
        Dir = dir; Config = config; _db = db; _lock = lockFile; _prefixed = prefixed;
        _checkpoint = CheckpointIn(dir); _adaptor = AdaptorIn(dir);
    }

    // the two files the protocol changes, each with its generation in its header
    private static DurableFile CheckpointIn(string dir) => new(dir, CheckpointFile, "palimpsest.generation", "generation");
    private static DurableFile AdaptorIn(string dir) => new(dir, AdaptorFile, "palimpsest.adaptor_generation", "adaptor generation");

    public string Dir { get; }
    public ModelConfig Config { get; }
    public string CheckpointPath => Path.Combine(Dir, CheckpointFile);
    public string JournalPath => Path.Combine(Dir, JournalFile);
    public string MastersPath => Path.Combine(Dir, MastersFile);
    public string AdaptorPath => Path.Combine(Dir, AdaptorFile);

    /// <summary>The committed generation of lemoe.safetensors (0: no LEMoE edit was ever made).</summary>
    public long AdaptorGeneration => _db.AdaptorGeneration;

    /// <summary>The model folder this one was created from (full path, as recorded at creation), or null when unknown.</summary>
    public string? Source => _db.Meta("source");

    /// <summary>The committed generation (0 = as created; +1 per apply or revert).</summary>
    public long Generation => _db.Generation;

    /// <summary>
    /// Called on the writing thread between two chunks (1 MiB) of an edit's or revert's checkpoint rewrite
    /// (null: never). A host that serves from the folder's weights holds the rewrite there while its
    /// latency-critical work runs (a serving host's LiveModel passes its decoding gate).
    /// </summary>
    public Action? BetweenWrites { get; set; }

    /// <summary>
    /// Where an apply (of weights or of an adaptor) adds the time of its steps when someone measures
    /// them (null: not measured): "save originals" (masters.safetensors), "recompose weights"
    /// (W = original + Σ deltas), "write model.safetensors" / "write lemoe.safetensors" (the pending
    /// file, fsynced), "commit journal" (the SQLite transaction) and "install ..." (the rename).
    /// </summary>
    public PhaseTimes? Phases { get; set; }

    /// <summary>What Open had to do to make the folder consistent, or null when it was already.</summary>
    public string? Recovery { get; private set; }

    /// <summary>Test hook: called after each protocol step ("masters-written", "pending-written",
    /// "committed", "renamed") so a test can kill the process exactly there.</summary>
    internal Action<string>? StepHook { get; set; }

    /// <summary>The checkpoint tensor holding block <paramref name="layer"/>'s WDown, and its layout.</summary>
    public DownProjection Down(int layer) => Architectures.Down(Config, layer, _prefixed);

    /// <summary>
    /// Makes <paramref name="outDir"/> an edited copy of a Hugging Face folder: config.json and the
    /// other non-weight files are copied, the weights (single file or shards) are rewritten as one
    /// model.safetensors with the same names, dtypes and bytes, and an empty journal is created. The
    /// folder is built beside outDir and renamed into place, so it appears complete or not at all.
    /// </summary>
    public static EditedModel Create(string sourceModelDir, string outDir)
    {
        if (!Directory.Exists(sourceModelDir)) throw new ModelFormatException($"{sourceModelDir}: model folder not found");
        var config = ModelConfig.Load(Path.Combine(sourceModelDir, "config.json"));
        outDir = Path.GetFullPath(outDir);
        string parent = DurableFs.CheckNewFolder(outDir);
        Directory.CreateDirectory(parent);
        var removed = RemoveStaleCreations(outDir);
        try
        {
            DurableFs.BuildFolder(outDir, "creating", tmp =>
            {
                // who is building this folder: a later Create removes it only once that process is gone
                File.WriteAllText(Path.Combine(tmp, CreatorFile), Creator(Environment.ProcessId));
                foreach (var file in Directory.EnumerateFiles(sourceModelDir))
                    if (!IsWeightsOrJournal(Path.GetFileName(file))) File.Copy(file, Path.Combine(tmp, Path.GetFileName(file)));
                var tensors = RawCheckpoint.ListFolder(sourceModelDir);
                bool prefixed = Architectures.HasTransformerPrefix(name => tensors.Exists(t => t.Name == name));
                for (int l = 0; l < config.Layers; l++) CheckDown(Architectures.Down(config, l, prefixed), tensors, sourceModelDir);
                var checkpoint = CheckpointIn(tmp);
                RawCheckpoint.MergeFolder(sourceModelDir, checkpoint.Path, meta => WithGeneration(checkpoint, meta, 0));
                using (JournalDb.Create(Path.Combine(tmp, JournalFile), new Dictionary<string, string>
                {
                    ["source"] = Path.GetFullPath(sourceModelDir),
                    ["created_utc"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
                })) { }
                File.Delete(Path.Combine(tmp, CreatorFile));
            });
        }
        catch (Exception e) when (AboutNewFolder(e, outDir))
        {
            throw CannotCreate(outDir, e);
        }
        var created = Open(outDir);
        if (removed.Count > 0)
            created.Recovery = $"removed {removed.Count} partial folder(s) that a killed creation of {Path.GetFileName(outDir)} had left: {string.Join(", ", removed.Select(Path.GetFileName))}";
        return created;
    }

    private const string CreatorFile = ".creator";

    // a file-system failure on the folder being built (not a source file that is missing)
    private static bool AboutNewFolder(Exception e, string outDir) => e switch
    {
        FileNotFoundException { FileName: { } name } => name.StartsWith(outDir, StringComparison.Ordinal),
        IOException or UnauthorizedAccessException => true,
        _ => false,
    };

    // a file-system failure while creating outDir, said about the folder the user named
    private static JournalException CannotCreate(string outDir, Exception e)
    {
        string parent = Path.GetDirectoryName(outDir)!;
        string why = e switch
        {
            _ when e is not UnauthorizedAccessException && Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any() => "another process created it at the same time",
            DirectoryNotFoundException or FileNotFoundException => $"{parent} does not take new folders",
            _ => DurableFs.WhyNotWritten(e, parent),
        };
        return new JournalException($"{outDir}: cannot create the edited-model folder there: {why}");
    }

    // "pid start-ticks": a pid alone could have been reused by another process since
    private static string Creator(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return $"{pid} {p.StartTime.ToUniversalTime().Ticks}"; }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception) { return $"{pid} 0"; }
    }

    /// <summary>
    /// Folders OUT.creating-* that a Create killed part-way left beside outDir (up to the model's
    /// size each): only ours (they carry the creator file) and only those whose creating process is
    /// gone (another Create may be running). Returns the ones removed.
    /// </summary>
    private static List<string> RemoveStaleCreations(string outDir)
    {
        var removed = new List<string>();
        string parent = Path.GetDirectoryName(outDir)!, prefix = Path.GetFileName(outDir) + ".creating-";
        foreach (var dir in Directory.EnumerateDirectories(parent, prefix + "*"))
        {
            string marker = Path.Combine(dir, CreatorFile);
            if (!File.Exists(marker)) continue;
            string[] who;
            try { who = File.ReadAllText(marker).Split(' ', StringSplitOptions.RemoveEmptyEntries); }
            catch (IOException) { continue; }
            if (who.Length != 2 || !int.TryParse(who[0], out int pid)) continue;
            if (Creator(pid) == string.Join(' ', who) && ProcessAlive(pid)) continue; // still at work
            try { Directory.Delete(dir, recursive: true); removed.Add(dir); }
            catch (IOException) { /* another Create removed it first */ }
            catch (UnauthorizedAccessException) { }
        }
        return removed;
    }

    private static bool ProcessAlive(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    private static bool IsWeightsOrJournal(string name) =>
        name.EndsWith(".safetensors", StringComparison.Ordinal) || name.EndsWith(".safetensors.index.json", StringComparison.Ordinal)
        || name.EndsWith(".bin", StringComparison.Ordinal) || name.EndsWith(".pt", StringComparison.Ordinal)
        || name.EndsWith(".pth", StringComparison.Ordinal) || name.EndsWith(".h5", StringComparison.Ordinal)
        || name.EndsWith(".msgpack", StringComparison.Ordinal) || name.EndsWith(".gguf", StringComparison.Ordinal)
        || name.StartsWith(JournalFile, StringComparison.Ordinal) || name == LockFile;

    private static void CheckDown(DownProjection dp, List<(string Name, string DType, int[] Shape)> tensors, string dir)
    {
        int i = tensors.FindIndex(x => x.Name == dp.TensorName);
        if (i < 0) throw new ModelFormatException($"{dir}: tensor '{dp.TensorName}' (block down-projection) not found");
        var t = tensors[i];
        if (!t.Shape.SequenceEqual(dp.StoredShape))
            throw new ModelFormatException($"{dir}: tensor '{dp.TensorName}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", dp.StoredShape)}]");
        if (t.DType is not ("F64" or "F32" or "F16" or "BF16"))
            throw new ModelFormatException($"{dir}: tensor '{dp.TensorName}' has dtype {t.DType}; editable weights must be F64, F32, F16 or BF16");
    }

    private static Dictionary<string, string> WithGeneration(DurableFile checkpoint, IReadOnlyDictionary<string, string> meta, long generation)
    {
        var m = new Dictionary<string, string>(meta, StringComparer.Ordinal);
        // transformers refuses safetensors metadata without a known "format"; "pt" is what PyTorch saves.
        m.TryAdd("format", "pt");
        return checkpoint.Stamped(m, generation);
    }

    /// <summary>
    /// <see cref="Open(string)"/>, waiting up to <paramref name="wait"/> while another process holds
    /// the folder (readers hold it for a moment to recover; an apply for the time it takes), then
    /// failing as Open does.
    /// </summary>
    public static EditedModel Open(string dir, TimeSpan wait)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try { return Open(dir); }
            catch (JournalException e) when (e.Busy && clock.Elapsed < wait)
            {
                Thread.Sleep(25);
            }
        }
    }

    /// <summary>Opens an edited model folder, recovering from an interrupted apply or revert (see the class comment).</summary>
    public static EditedModel Open(string dir)
    {
        if (!Directory.Exists(dir)) throw new JournalException($"{dir}: edited-model folder not found");
        dir = Path.GetFullPath(dir);
        if (!File.Exists(Path.Combine(dir, JournalFile)))
            throw new JournalException($"{Path.Combine(dir, JournalFile)}: journal not found (not an edited-model folder?)");
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        FileStream lockFile;
        try { lockFile = new FileStream(Path.Combine(dir, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
        catch (IOException) { throw new JournalException($"{Path.Combine(dir, LockFile)}: the edited model is open in another process", busy: true); }
        JournalDb? db = null;
        try
        {
            db = JournalDb.Open(Path.Combine(dir, JournalFile));
            string ckpt = Path.Combine(dir, CheckpointFile);
            if (!File.Exists(ckpt)) throw new JournalException($"{ckpt}: checkpoint not found");
            bool prefixed;
            using (var f = SafetensorsFile.Open(ckpt)) prefixed = Architectures.HasTransformerPrefix(f.Contains);
            var m = new EditedModel(dir, config, db, lockFile, prefixed);
            m.Recover();
            return m;
        }
        catch
        {
            db?.Dispose();
            lockFile.Dispose();
            throw;
        }
    }

    // Both files to the committed generations (the journal wins: see the class comment), then the
    // leftovers: pending files of uncommitted generations (a crash before the commit) and the temp
    // files of interrupted atomic writes. None of them is part of the committed state.
    private void Recover()
    {
        long generation = _db.Generation, adaptorGeneration = _db.AdaptorGeneration;
        var active = _db.AdaptorEdits(activeOnly: true);
        var done = new List<string?>
        {
            // every matrix an edit ever touched (reverted ones too: they must go back to the original)
            _checkpoint.Recover(generation, path => WriteCheckpoint(path, generation,
                Recompose(ReadMasters().Keys.Union(_db.TouchedTensors()).ToList(), _db.Deltas(activeOnly: true)))),
            _adaptor.Recover(adaptorGeneration, active.Count == 0 ? null : path => WriteAdaptor(path, adaptorGeneration, active)),
        };
        var stray = Directory.EnumerateFiles(Dir)
            .Where(p => Path.GetFileName(p) is var n && (_checkpoint.IsPending(n) || _adaptor.IsPending(n) || n.Contains(".tmp-", StringComparison.Ordinal)))
            .ToList();
        foreach (var p in stray) File.Delete(p);
        if (stray.Count > 0) done.Add($"removed {stray.Count} uncommitted file(s): {string.Join(", ", stray.Select(Path.GetFileName))}");
        Recovery = done.Any(d => d is not null) ? string.Join("; ", done.OfType<string>()) : null;
    }


    /// <summary>
    /// Applies a LEMoE edit. <paramref name="adaptor"/> is this folder's adaptor after training: its
    /// earlier experts are the folder's active LEMoE edits, in order, and its newest expert (with the
    /// router as trained now) is this edit's. Records them in the journal in the same transaction
    /// that moves lemoe.safetensors to the next adaptor generation, then puts the file in place.
    /// The checkpoint is untouched. Returns the edit id.
    /// </summary>
    public long ApplyAdaptor(LemoeAdaptor adaptor, LemoeHparams hp, EditRecord meta)
    {
        ArgumentNullException.ThrowIfNull(adaptor);
        ArgumentNullException.ThrowIfNull(hp);
        ArgumentNullException.ThrowIfNull(meta);
        if (string.IsNullOrWhiteSpace(meta.Method)) throw new ArgumentException("EditRecord.Method is empty");
        if (adaptor.Layer != hp.Layer || adaptor.Rank != hp.ExpertRank || adaptor.RouterHidden != hp.RouterHidden || adaptor.KeyDim != hp.KeyDim)
            throw new ArgumentException($"the adaptor (layer {adaptor.Layer}, rank {adaptor.Rank}) does not have the shapes of hparams (layer {hp.Layer}, rank {hp.ExpertRank})");
        if (adaptor.DModel != Config.DModel || adaptor.DFf != Config.DFf)
            throw new ArgumentException($"the adaptor is for d_model {adaptor.DModel}, d_ff {adaptor.DFf}; this model has {Config.DModel}, {Config.DFf}");
        var active = _db.AdaptorEdits(activeOnly: true);
        if (adaptor.Experts.Count != active.Count + 1)
            throw new ArgumentException($"the adaptor has {adaptor.Experts.Count} expert(s); this folder has {active.Count} active LEMoE edit(s), so it needs {active.Count + 1} (theirs and the new one)");
        for (int i = 0; i < active.Count; i++)
            if (!LemoeEdit.Trained(active[i].Parts, adaptor, i))
                throw new ArgumentException($"the adaptor's expert {i} is not the one LEMoE edit {active[i].EditId} of this folder recorded (load the folder's {AdaptorFile} before training)");
        var edit = LemoeEdit.Newest(adaptor);
        if (edit.Parts.Any(p => !p.Values.All(double.IsFinite)))
            throw new ArgumentException("the adaptor's new expert or router contains NaN or infinity");

        string hparamsJson = hp.ToJson();
        var requestsJson = meta.RequestsJson();
        long generation = _db.AdaptorGeneration + 1;
        var row = new EditRow(meta.Time ?? DateTimeOffset.UtcNow, meta.Method, meta.SubjectSummary(), meta.TargetSummary(),
            [adaptor.Layer], adaptor.BypassNorm(adaptor.Experts[^1]), PartsHash(meta.Method, requestsJson, hparamsJson, edit), requestsJson, hparamsJson);
        // the pending file is written from the journal's view plus this edit, exactly as a rebuild would
        var next = active.Select(a => a.Parts).Append(edit).ToList();
        return _adaptor.Change(generation, path => WriteAdaptor(path, generation, next, hparamsJson),
            () => _db.InsertAdaptorEdit(row, edit, _db.Generation, generation), Step, "the LEMoE edit", Phases);
    }

    // The adaptor of these LEMoE edits (in edit order) at `path`, with the newest one's hparams in the
    // header (what loading needs). The newest need not be in the journal yet (ApplyAdaptor writes the
    // file before committing it).
    private void WriteAdaptor(string path, long generation, IReadOnlyList<PartsBlob> edits, string newestHparams) =>
        LemoeEdit.WriteAdaptor(path, edits, _adaptor.Stamped(new Dictionary<string, string> { ["hparams"] = newestHparams }, generation));

    // the adaptor of these journaled LEMoE edits
    private void WriteAdaptor(string path, long generation, IReadOnlyList<(long EditId, PartsBlob Parts)> edits) =>
        WriteAdaptor(path, generation, edits.Select(e => e.Parts).ToList(), _db.Entries(edits[^1].EditId).Single().HyperParametersJson);

    // Reverting the newest active LEMoE edit: the file rebuilt from the ones before it (or removed).
    private void RevertAdaptor(long editId, List<(long EditId, PartsBlob Parts)> active)
    {
        if (active[^1].EditId != editId) // the caller found editId among them
            throw new InvalidOperationException($"{JournalPath}: edit {editId} is a LEMoE edit older than the newest active one ({active[^1].EditId}): "
                + "later experts were trained with its router, so revert the newer LEMoE edits first, newest first");
        long generation = _db.AdaptorGeneration + 1;
        var remaining = active.Take(active.Count - 1).ToList();
        _adaptor.Change(generation, remaining.Count == 0 ? null : path => WriteAdaptor(path, generation, remaining),
            () => { _db.MarkAdaptorReverted(editId, DateTimeOffset.UtcNow, generation); return 0L; }, Step, $"the revert of edit {editId}");
    }

    // SHA-256 over method, requests, hyper-parameters and the parts' values in order
    private static string PartsHash(string method, string requestsJson, string hparams, PartsBlob parts)
    {
        using var h = HashOf(method, requestsJson, hparams);
        foreach (var p in parts.Parts) h.AppendData(MemoryMarshal.AsBytes(p.Values.AsSpan()));
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>
    /// Applies an edit: records its deltas (exact factors) and meta in the journal in the same
    /// transaction that makes the new weights the committed state, then puts the new checkpoint in
    /// place. Returns the edit id. Deltas must have rank ≥ 1, finite factors and block l's (f, d).
    /// </summary>
    public long Apply(IReadOnlyList<WeightDelta> deltas, EditRecord meta)
    {
        ArgumentNullException.ThrowIfNull(deltas);
        ArgumentNullException.ThrowIfNull(meta);
        if (deltas.Count == 0) throw new ArgumentException("an edit needs at least one weight delta");
        if (string.IsNullOrWhiteSpace(meta.Method)) throw new ArgumentException("EditRecord.Method is empty");
        try { using var j = JsonDocument.Parse(meta.HyperParametersJson); }
        catch (JsonException e) { throw new ArgumentException($"EditRecord.HyperParametersJson is not valid JSON ({e.Message.Split('\n')[0]})"); }
        var named = new List<(string Tensor, WeightDelta Delta)>(deltas.Count);
        foreach (var d in deltas) named.Add((Check(d).TensorName, d));

        long generation = _db.Generation + 1;
        var tensors = named.Select(n => n.Tensor).Distinct().ToList();
        PhaseTimes.Time(Phases, "save originals", () => EnsureMasters(tensors));
        Step("masters-written");

        // The new edit's id exceeds every existing id (AUTOINCREMENT), so appending its deltas after
        // the active ones is exactly the (edit id, index) order a later rebuild uses.
        var active = _db.Deltas(activeOnly: true);
        active.AddRange(named.Select((n, i) => new StoredDelta(long.MaxValue, i, n.Tensor, n.Delta)));
        var requestsJson = meta.RequestsJson();
        var row = new EditRow(meta.Time ?? DateTimeOffset.UtcNow, meta.Method, meta.SubjectSummary(), meta.TargetSummary(),
            deltas.Select(d => d.Layer).Distinct().Order().ToArray(), EditNorm(deltas),
            ContentHash(meta.Method, requestsJson, meta.HyperParametersJson, deltas), requestsJson, meta.HyperParametersJson);
        var weights = PhaseTimes.Time(Phases, "recompose weights", () => Recompose(tensors, active));
        return _checkpoint.Change(generation, path => WriteCheckpoint(path, generation, weights),
            () => _db.InsertEdit(row, named, generation, meta.EditorMemory), Step, "the edit", Phases);
    }

    /// <summary>
    /// Reverts an edit: its matrices are recomposed from the originals and the remaining active
    /// edits (so reverting everything restores the original bits), the revert is committed in the
    /// journal, and the checkpoint replaced atomically — same protocol as <see cref="Apply"/>.
    /// </summary>
    public void Revert(long editId)
    {
        var entry = _db.Entries(editId).SingleOrDefault()
            ?? throw new ArgumentException($"{JournalPath}: edit {editId} not found");
        if (entry.Reverted)
            throw new InvalidOperationException($"{JournalPath}: edit {editId} was already reverted at {entry.RevertedTime:u}");
        var adaptorEdits = _db.AdaptorEdits(activeOnly: true);
        if (adaptorEdits.Any(a => a.EditId == editId)) { RevertAdaptor(editId, adaptorEdits); return; }
        long generation = _db.Generation + 1;
        var tensors = _db.Deltas(activeOnly: false, editId).Select(d => d.Tensor).Distinct().ToList();
        var remaining = _db.Deltas(activeOnly: true).Where(d => d.EditId != editId).ToList();
        _checkpoint.Change(generation, path => WriteCheckpoint(path, generation, Recompose(tensors, remaining)),
            () => { _db.MarkReverted(editId, DateTimeOffset.UtcNow, generation); return 0L; }, Step, $"the revert of edit {editId}");
    }

    /// <summary>
    /// The active (not reverted) edits of one method, oldest first — their requests and the memory each
    /// journaled for its editor — for an editor that continues from them (<see cref="Reopen"/>).
    /// The method matches case-insensitively (journals written before the editor table say "ROME", "AlphaEdit").
    /// </summary>
    public IReadOnlyList<JournaledEdit> ActiveEdits(string method) =>
        _db.Entries().Where(e => !e.Reverted && string.Equals(e.Method, method, StringComparison.OrdinalIgnoreCase))
            .Select(e => new JournaledEdit(e.Id, e.ParseRequests(), _db.EditorMemory(e.Id))).ToList();

    /// <summary>
    /// Puts an editor where this folder's edits left it: its <see cref="IEditor.Reopen"/> gets the
    /// active edits of its method (AlphaEdit protects their keys, UltraEdit continues their moments).
    /// Call it after opening the folder and after reverting. Returns how many earlier edits it was given.
    /// </summary>
    public int Reopen(IEditor editor, Palimpsest.Runtime.Transformer model)
    {
        var earlier = ActiveEdits(editor.Method);
        editor.Reopen(model, earlier);
        return earlier.Count;
    }

    /// <summary>Records what was seen after an edit in its journal entry (e.g. that its rewriting prompt does not answer the target).</summary>
    public void SetOutcome(long editId, string? outcome) => _db.SetOutcome(editId, outcome);

    /// <summary>Every edit, oldest first, reverted ones included.</summary>
    public IReadOnlyList<JournalEntry> List() => _db.Entries();

    /// <summary>The exact deltas recorded for an edit, in the order they were given to Apply.</summary>
    public IReadOnlyList<WeightDelta> DeltasOf(long editId)
    {
        if (_db.Entries(editId).Count == 0) throw new ArgumentException($"{JournalPath}: edit {editId} not found");
        return _db.Deltas(activeOnly: false, editId).Select(d => d.Delta).ToList();
    }

    private void Step(string name) => StepHook?.Invoke(name);

    /// <summary>
    /// The LEMoE adaptor of a model folder (its lemoe.safetensors, hparams from the header) for
    /// <paramref name="model"/>, or null when it has none. Set it as the Transformer's Adaptor so
    /// the folder's LEMoE edits take part in every forward.
    /// </summary>
    public static LemoeAdaptor? LoadAdaptor(string dir, Palimpsest.Runtime.Model model)
    {
        string path = Path.Combine(dir, AdaptorFile);
        return File.Exists(path) ? LemoeAdaptor.LoadFile(path, model) : null;
    }

    /// <summary>
    /// Before a reader loads a folder's weights (predict, generate, eval, any command that opens it
    /// read-only): an edited-model folder is first made to hold what its journal says. An apply or
    /// revert killed between its journal commit and the checkpoint's rename left the previous
    /// generation in model.safetensors; this recovers it (Open does) when no other process holds the
    /// folder. When one does (an edit is being applied right now), a checkpoint whose generation is
    /// not the journal's is refused with one line rather than read stale; nothing waits. A folder
    /// without a journal is left alone.
    /// </summary>
    public static void Settle(string dir)
    {
        if (!IsEditedModel(dir)) return;
        try { Open(dir).Dispose(); return; }
        catch (JournalException e) when (e.Busy) { }
        long journal = JournalDb.ReadGeneration(Path.Combine(dir, JournalFile));
        long? checkpoint = CheckpointIn(dir).Generation;
        if (checkpoint != journal)
            throw new JournalException($"{Path.GetFullPath(dir)}: an edit or revert is being applied by another process (journal generation {journal}, "
                + $"checkpoint {checkpoint?.ToString(CultureInfo.InvariantCulture) ?? "unknown"}); read it again once that is done");
    }

    /// <summary>A folder's journal (every edit, its generation) read without its lock and without recovering anything: what `journal` shows while an edit is being applied.</summary>
    public static (IReadOnlyList<JournalEntry> Entries, long Generation) ReadJournal(string dir)
    {
        string path = Path.Combine(dir, JournalFile);
        if (!File.Exists(path)) throw new JournalException($"{path}: journal not found (not an edited-model folder?)");
        return JournalDb.ReadOnly(path);
    }

    /// <summary>Whether <paramref name="dir"/> looks like an edited-model folder (has a journal).</summary>
    public static bool IsEditedModel(string dir) => File.Exists(Path.Combine(dir, JournalFile));

    /// <summary>Block <paramref name="layer"/>'s current WDown as stored in the checkpoint, in canonical
    /// [f, d] layout (float32 data, float64 for F64 checkpoints; exact) — what a reload would give, so a
    /// caller that keeps a model in memory can refresh just the edited matrices after Apply/Revert.</summary>
    public HostTensor ReadDownProjection(int layer)
    {
        var dp = Down(layer);
        using var f = SafetensorsFile.Open(CheckpointPath);
        var stored = f.ReadHost(dp.TensorName);
        return dp.Transposed ? HostOps.Transpose(stored) : stored;
    }

    private DownProjection Check(WeightDelta d)
    {
        var dp = Down(d.Layer);
        if (d.Rank < 1) throw new ArgumentException($"delta for layer {d.Layer}: rank {d.Rank} < 1");
        if (d.Left.LongLength != (long)d.Rank * dp.KeyDim || d.Right.LongLength != (long)d.Rank * dp.ValueDim)
            throw new ArgumentException($"delta for layer {d.Layer}: rank {d.Rank} needs Left [{d.Rank}, {dp.KeyDim}] and Right [{d.Rank}, {dp.ValueDim}], got {d.Left.Length} and {d.Right.Length} values");
        if (!d.Left.All(double.IsFinite) || !d.Right.All(double.IsFinite))
            throw new ArgumentException($"delta for layer {d.Layer}: factors contain NaN or infinity");
        return dp;
    }

    private DownProjection DownOf(string tensor)
    {
        for (int l = 0; l < Config.Layers; l++)
            if (Down(l) is var dp && dp.TensorName == tensor) return dp;
        throw new JournalException($"{JournalPath}: tensor '{tensor}' is not a down-projection of this model");
    }

    /// <summary>masters.safetensors as raw tensors by name (empty before the first edit).</summary>
    private Dictionary<string, RawTensor> ReadMasters() =>
        File.Exists(MastersPath) ? RawCheckpoint.ReadFile(MastersPath).Tensors.ToDictionary(t => t.Name) : [];

    // Step 1 of the protocol: originals of first-time-edited matrices, from the current checkpoint.
    private void EnsureMasters(IReadOnlyList<string> tensors)
    {
        var masters = ReadMasters();
        var missing = tensors.Where(t => !masters.ContainsKey(t)).ToList();
        if (missing.Count == 0) return;
        var touched = _db.TouchedTensors();
        using var ckpt = SafetensorsFile.Open(CheckpointPath);
        foreach (var name in missing)
        {
            // The checkpoint holds the original only if no committed edit ever changed this matrix.
            if (touched.Contains(name))
                throw new JournalException($"{MastersPath}: the original of '{name}' is missing although the journal has edits of it");
            var info = ckpt.Info(name);
            var (dtype, data) = info.DType == "F64"
                ? ("F64", MemoryMarshal.AsBytes(ckpt.ReadF64(name).AsSpan()).ToArray())
                : ("F32", MemoryMarshal.AsBytes(ckpt.ReadF32(name).AsSpan()).ToArray());
            masters[name] = new RawTensor(name, dtype, (int[])info.Shape.Clone(), data);
        }
        RawCheckpoint.Write(MastersPath, masters.Values.OrderBy(t => t.Name, StringComparer.Ordinal),
            new Dictionary<string, string> { ["palimpsest.content"] = "original values of the edited matrices" });
        DurableFs.FsyncDirectory(Dir);
    }

    /// <summary>
    /// W = original + Σ deltas (in the given order, float64), for each named tensor, in the stored
    /// layout, as float64. The one place weights are computed, so apply, revert and rebuild agree bit for bit.
    /// </summary>
    private Dictionary<string, double[]> Recompose(IReadOnlyList<string> tensors, IReadOnlyList<StoredDelta> ordered)
    {
        var result = new Dictionary<string, double[]>(StringComparer.Ordinal);
        if (tensors.Count == 0) return result;
        using var masters = File.Exists(MastersPath) ? SafetensorsFile.Open(MastersPath)
            : throw new JournalException($"{MastersPath}: not found although edited matrices need their originals");
        foreach (var name in tensors)
        {
            if (!masters.Contains(name)) throw new JournalException($"{MastersPath}: original of '{name}' not found");
            var dp = DownOf(name);
            var w = masters.ReadF64(name);
            foreach (var sd in ordered)
                if (sd.Tensor == name) AddLowRank(w, dp, sd.Delta);
            result[name] = w;
        }
        return result;
    }

    // w [stored layout of f×d] += Σ_r Left[r] ⊗ Right[r]   (Left [rank, f], Right [rank, d])
    // Rows i run in parallel; each element still receives its terms in r order, so the bits do not
    // depend on the thread count.
    internal static void AddLowRank(double[] w, DownProjection dp, WeightDelta d)
    {
        int f = dp.KeyDim, dd = dp.ValueDim;
        var opts = new ParallelOptions { MaxDegreeOfParallelism = (long)f * dd * d.Rank < 1 << 16 ? 1 : -1 };
        Parallel.For(0, f, opts, i =>
        {
            for (int r = 0; r < d.Rank; r++)
            {
                double a = d.Left[(long)r * f + i];
                long right = (long)r * dd;
                if (dp.Transposed) for (int j = 0; j < dd; j++) w[(long)j * f + i] += a * d.Right[right + j];
                else
                {
                    long row = (long)i * dd;
                    for (int j = 0; j < dd; j++) w[row + j] += a * d.Right[right + j];
                }
            }
        });
    }

    // Step 2 of the protocol: the current checkpoint with the given matrices replaced, at `path`,
    // streamed (its unreplaced tensors copied in chunks, BetweenWrites called between them).
    private void WriteCheckpoint(string path, long generation, Dictionary<string, double[]> replaced)
    {
        RawCheckpoint.Rewrite(CheckpointPath, path, replaced, meta => WithGeneration(_checkpoint, meta, generation), BetweenWrites);
    }

    /// <summary>||ΔW||_F of an edit: deltas of the same layer are summed before the norm.</summary>
    private static double EditNorm(IReadOnlyList<WeightDelta> deltas)
    {
        double s = 0;
        foreach (var g in deltas.GroupBy(d => d.Layer))
        {
            var merged = new WeightDelta(g.Key, g.Sum(d => d.Rank), g.SelectMany(d => d.Left).ToArray(), g.SelectMany(d => d.Right).ToArray());
            double n = merged.FrobeniusNorm();
            s += n * n;
        }
        return Math.Sqrt(s);
    }

    // SHA-256 started over an edit's method, requests and hyper-parameters (each NUL-terminated)
    private static IncrementalHash HashOf(string method, string requestsJson, string hparams)
    {
        var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var s in new[] { method, requestsJson, hparams })
        {
            h.AppendData(Encoding.UTF8.GetBytes(s));
            h.AppendData([0]);
        }
        return h;
    }

    /// <summary>SHA-256 over method, requests, hyper-parameters and the exact factor bytes.</summary>
    private static string ContentHash(string method, string requestsJson, string hparams, IReadOnlyList<WeightDelta> deltas)
    {
        using var h = HashOf(method, requestsJson, hparams);
        Span<byte> i8 = stackalloc byte[8];
        foreach (var d in deltas)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(i8, d.Layer); h.AppendData(i8);
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(i8, d.Rank); h.AppendData(i8);
            h.AppendData(MemoryMarshal.AsBytes(d.Left.AsSpan()));
            h.AppendData(MemoryMarshal.AsBytes(d.Right.AsSpan()));
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    public void Dispose()
    {
        _db.Dispose();
        _lock.Dispose();
    }
}
