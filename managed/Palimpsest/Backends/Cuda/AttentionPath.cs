namespace Palimpsest.Backends.Cuda;

/// <summary>
/// The implementations of CudaBackend's causal attention (kernels/attention.cu and cuBLAS). Each
/// computes the same thing; tests hold every one to the float64 reference.
/// </summary>
public enum AttentionPath
{
    /// <summary>
    /// With one kv head per head, the GEMM path (unless the score matrix it keeps would pass 256 MiB
    /// without the caller asking for probs); otherwise below 16 query rows (decoding) the simple
    /// kernel, else the tiled kernel. The backward takes the GEMM path whenever heads == kvHeads.
    /// </summary>
    Auto,
    /// <summary>attention_fwd: one block per query row and head (the reference kernel); kernel backward.</summary>
    SimpleKernel,
    /// <summary>attention_fwd_tiled: flash-style tiles with online softmax, no score matrix (head size up to 256); kernel backward.</summary>
    TiledKernel,
    /// <summary>Two cuBLAS strided-batched products around a row softmax kernel, forward and backward (heads == kvHeads only).</summary>
    Gemm,
}
