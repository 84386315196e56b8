namespace Palimpsest.Backends;

/// <summary>
/// A backend whose tensors another instance can compute on from another thread. A backend
/// instance is not thread-safe (it keeps scratch buffers and loop jobs), but its tensors are plain
/// memory that any instance of the same kind can read: CreateSibling returns a new instance that
/// shares nothing mutable with this one, so several threads can each run a Transformer over the
/// same weights at once, as long as none of them writes the weights. WilKE's layer scan uses it.
/// CUDA does not implement it (one stream, one cuBLAS handle, one buffer cache per context).
/// </summary>
public interface ISiblingBackend
{
    /// <summary>A new instance of this backend, running its ops on <paramref name="threads"/> threads; the caller disposes it.</summary>
    IBackend CreateSibling(int threads);
}
