using System.Text.Json;
using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Journal;

/// <summary>One layer of an exported adapter: ΔW [f, d] ≈ Aᵀ·Bᵀ, i.e. PEFT's B·A = ΔWᵀ in torch's [out, in] layout.</summary>
/// <param name="TotalRank">Σ of the ranks of the layer's active deltas (the rank of the stacked factors).</param>
/// <param name="Rank">The rank exported: TotalRank when it fits, else the truncation rank.</param>
/// <param name="RelativeError">||ΔW − ΔW_exported||_F / ||ΔW||_F in float64 (0 when exported exactly; before float32 rounding).</param>
/// <param name="A">lora_A [Rank, f] row-major.</param>
/// <param name="B">lora_B [d, Rank] row-major.</param>
public sealed record LoraLayer(int Layer, int TotalRank, int Rank, double RelativeError, double[] A, double[] B);

/// <summary>What <see cref="LoraExport.Export"/> wrote.</summary>
/// <param name="Rank">The adapter's r: the largest exported rank over its layers.</param>
/// <param name="SkippedAdaptorEdits">Active LEMoE edits: they change no weight, so the adapter does not contain them.</param>
public sealed record LoraExportResult(string AdapterDir, int Rank, IReadOnlyList<LoraLayer> Layers, IReadOnlyList<long> SkippedAdaptorEdits);

/// <summary>
/// An edited-model folder's active weight edits as a PEFT LoRA adapter (adapter_config.json +
/// adapter_model.safetensors) that serving engines (vLLM, TGI, PEFT itself) load onto the source model.
/// Per layer, ΔW = Σ over active deltas in journal order (the sum the checkpoint holds) = Lᵀ·R with L the
/// stacked Left factors [k, f] and R the stacked Right factors [k, d]. When k fits the requested rank
/// the adapter is exact: lora_A = L, lora_B = Rᵀ. Otherwise ΔW is truncated to its best rank-R
/// approximation (Eckart–Young) through the SVD of the k×k core of the two thin QRs, never forming the
/// dense [f, d] matrix. lora_alpha = r, so PEFT's scaling is 1.
///
/// LEMoE edits change no weight (they are a gated side path), so they cannot be a LoRA of WDown: they
/// are left out, and the result lists them so the caller says so.
/// </summary>
public static class LoraExport
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>Factors the folder's active weight edits, layer by layer (ascending); at most <paramref name="maxRank"/> per layer when given.</summary>
    public static IReadOnlyList<LoraLayer> Factor(EditedModel em, int? maxRank)
    {
        ArgumentNullException.ThrowIfNull(em);
        if (maxRank is < 1) throw new ArgumentOutOfRangeException(nameof(maxRank), maxRank, "the adapter rank must be at least 1");
        var byLayer = new SortedDictionary<int, List<WeightDelta>>();
        foreach (var e in em.List().Where(e => !e.Reverted))
            foreach (var d in em.DeltasOf(e.Id))
            {
                if (!byLayer.TryGetValue(d.Layer, out var list)) byLayer[d.Layer] = list = [];
                list.Add(d);
            }
        return byLayer.Select(kv => FactorLayer(kv.Key, kv.Value, em.Config.DFf, em.Config.DModel, maxRank)).ToList();
    }

    /// <summary>
    /// Writes the adapter of <paramref name="em"/>'s active weight edits to <paramref name="outDir"/>
    /// (which must not exist or be empty): built in a folder beside it and renamed into place, so it
    /// appears complete or not at all.
    /// </summary>
    public static LoraExportResult Export(EditedModel em, string outDir, int? maxRank)
    {
        ArgumentNullException.ThrowIfNull(em);
        outDir = Path.GetFullPath(outDir);
        DurableFs.CheckNewFolder(outDir);
        var layers = Factor(em, maxRank);
        var skipped = em.List().Where(e => !e.Reverted && em.DeltasOf(e.Id).Count == 0).Select(e => e.Id).ToList();
        if (layers.Count == 0)
            throw new JournalException($"{em.Dir}: no active weight edits to export"
                + (skipped.Count > 0 ? $" (its {skipped.Count} active LEMoE edit(s) change no weight and cannot be a LoRA)" : ""));
        int r = layers.Max(l => l.Rank);
        var c = em.Config;
        var tensors = new List<(string, HostTensor, string)>();
        foreach (var l in layers)
        {
            // Layers exported at a lower rank than r are padded with zero rows of A and zero columns
            // of B: PEFT has one r per adapter here, and zeros add nothing to B·A.
            var a = new double[(long)r * c.DFf];
            var b = new double[(long)c.DModel * r];
            Array.Copy(l.A, a, l.A.Length);
            for (int j = 0; j < c.DModel; j++) Array.Copy(l.B, (long)j * l.Rank, b, (long)j * r, l.Rank);
            string module = ModulePath(c, l.Layer);
            tensors.Add(($"{module}.lora_A.weight", new HostTensor([r, c.DFf], a), "F32"));
            tensors.Add(($"{module}.lora_B.weight", new HostTensor([c.DModel, r], b), "F32"));
        }
        string config = AdapterConfig(c, r, layers.Select(l => l.Layer).ToList(), em.Source);
        DurableFs.BuildFolder(outDir, "exporting", tmp =>
        {
            SafetensorsWriter.Write(Path.Combine(tmp, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            AtomicFile.WriteAllText(Path.Combine(tmp, ConfigFile), config);
        });
        return new LoraExportResult(outDir, r, layers, skipped);
    }

    /// <summary>PEFT's name of block <paramref name="layer"/>'s down-projection module in the causal-LM
    /// model: "base_model.model." + the checkpoint tensor name without ".weight" (GPT-2 always with its
    /// "transformer." prefix, which GPT2LMHeadModel has even when a checkpoint was saved without it).</summary>
    public static string ModulePath(ModelConfig c, int layer)
    {
        string tensor = Architectures.Down(c, layer, hasTransformerPrefix: true).TensorName;
        return "base_model.model." + tensor[..^".weight".Length];
    }

    /// <summary>The target_modules entry: the module name PEFT matches as a suffix. GPT-2's is "mlp.c_proj"
    /// (plain "c_proj" would also match attn.c_proj); the others' names are unique to the MLP.</summary>
    public static string TargetModule(ModelConfig c)
    {
        string path = ModulePath(c, 0);
        string name = path[(path.LastIndexOf('.') + 1)..];
        return c.Arch == Architecture.Gpt2 ? "mlp." + name : name;
    }

    private static string AdapterConfig(ModelConfig c, int r, IReadOnlyList<int> layers, string? source)
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("peft_type", "LORA");
            w.WriteString("task_type", "CAUSAL_LM");
            if (source is null) w.WriteNull("base_model_name_or_path");
            else w.WriteString("base_model_name_or_path", source);
            w.WriteNumber("r", r);
            w.WriteNumber("lora_alpha", r); // scaling = lora_alpha / r = 1: B·A is ΔW itself
            w.WriteNumber("lora_dropout", 0.0);
            w.WriteString("bias", "none");
            // GPT-2's Conv1D stores its weight as [in, out]: PEFT then transposes B·A before adding it
            w.WriteBoolean("fan_in_fan_out", c.Arch == Architecture.Gpt2);
            w.WriteStartArray("target_modules");
            w.WriteStringValue(TargetModule(c));
            w.WriteEndArray();
            w.WriteStartArray("layers_to_transform");
            foreach (var l in layers) w.WriteNumberValue(l);
            w.WriteEndArray();
            w.WriteBoolean("inference_mode", true);
            w.WriteBoolean("use_rslora", false);
            w.WriteBoolean("use_dora", false);
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray()) + "\n";
    }

    /// <summary>One layer's deltas (Left [rank, f], Right [rank, d] each) as lora_A/lora_B of at most <paramref name="maxRank"/>.</summary>
    internal static LoraLayer FactorLayer(int layer, IReadOnlyList<WeightDelta> deltas, int f, int d, int? maxRank)
    {
        int k = deltas.Sum(x => x.Rank);
        var left = deltas.SelectMany(x => x.Left).ToArray();   // L [k, f]
        var right = deltas.SelectMany(x => x.Right).ToArray(); // R [k, d]
        if (maxRank is null || k <= maxRank)
        {
            var bExact = new double[(long)d * k];
            for (int r = 0; r < k; r++)
                for (int j = 0; j < d; j++) bExact[(long)j * k + r] = right[(long)r * d + j];
            return new LoraLayer(layer, k, k, 0, left, bExact);
        }
        var (u, s, v) = ThinSvd(left, right, k, f, d);
        int rank = Math.Min(maxRank.Value, s.Count);
        double all = 0, dropped = 0;
        for (int i = 0; i < s.Count; i++)
        {
            all += s[i] * s[i];
            if (i >= rank) dropped += s[i] * s[i];
        }
        // √σ on each side, so A and B have the same scale
        var a = new double[(long)rank * f];
        var b = new double[(long)d * rank];
        for (int r = 0; r < rank; r++)
        {
            double root = Math.Sqrt(s[r]);
            for (int i = 0; i < f; i++) a[(long)r * f + i] = root * u[i, r];
            for (int j = 0; j < d; j++) b[(long)j * rank + r] = root * v[j, r];
        }
        return new LoraLayer(layer, k, rank, all > 0 ? Math.Sqrt(dropped / all) : 0, a, b);
    }

    /// <summary>ΔW = Lᵀ·R = U·diag(s)·Vᵀ with U [f, m], V [d, m], s descending. With k ≤ min(f, d):
    /// Lᵀ = Q₁R₁, Rᵀ = Q₂R₂ (thin QR), SVD of the k×k core R₁R₂ᵀ = U'SV'ᵀ, so U = Q₁U', V = Q₂V'.
    /// A stack wider than the matrix (k > f or d) takes the dense SVD of the [f, d] ΔW instead.</summary>
    private static (Matrix<double> U, Vector<double> S, Matrix<double> V) ThinSvd(double[] left, double[] right, int k, int f, int d)
    {
        var lt = Matrix<double>.Build.Dense(f, k, (i, r) => left[(long)r * f + i]);
        var rt = Matrix<double>.Build.Dense(d, k, (j, r) => right[(long)r * d + j]);
        if (k > f || k > d)
        {
            var dense = (lt * rt.Transpose()).Svd(computeVectors: true);
            return (dense.U, dense.S, dense.VT.Transpose());
        }
        var q1 = lt.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin);
        var q2 = rt.QR(MathNet.Numerics.LinearAlgebra.Factorization.QRMethod.Thin);
        var core = (q1.R * q2.R.Transpose()).Svd(computeVectors: true);
        return (q1.Q * core.U, core.S, q2.Q * core.VT.Transpose());
    }
}
