namespace Palimpsest.Runtime;

// What a forward that fails part way leaves in the cache. Its rows go in layer by layer and Length moves only
// once every layer has them (Commit), so the rows a full layer or an appending sliding layer writes lie past
// Length and change nothing it covers; a sliding layer that moves its rows to the front keeps every key the
// token at Length reads. A sliding layer that gathers (more than slack new tokens) does not: it overwrites
// its rows with the last of the new ones, dropping keys that token reads. Rather than keep a copy of the old
// rows on every such forward to restore them, the cache is marked and refuses every later forward (and a Truncate
// it cannot honour) with one line, until Reset or a Truncate to a length every layer still holds.
public sealed partial class KvCache
{
    /// <summary>
    /// A forward that overwrote a sliding layer's rows failed before it finished: <see cref="Length"/> names keys
    /// that layer no longer holds, and every forward throws until <see cref="Reset"/> (or a <see cref="Truncate"/> to a
    /// length whose keys every layer holds).
    /// </summary>
    public bool Incomplete { get; private set; }

    /// <summary>The forward of ids at positions pos0.. finished: every layer holds their rows, and the cache ends after them.</summary>
    internal void Commit(ReadOnlySpan<int> ids, int pos0)
    {
        ids.CopyTo(Tokens.AsSpan(pos0));
        Length = pos0 + ids.Length;
        Incomplete = false;
    }

    /// <summary>Throws the one line that says so when a failed forward left the cache incomplete.</summary>
    internal void ThrowIfIncomplete()
    {
        if (Incomplete)
            throw new InvalidOperationException($"the KV cache was left incomplete by a failed forward: a sliding layer no longer holds the keys "
                + $"position {Length} reads; Reset it (DecodeSession.Restart, for a session) before using it again");
    }
}
