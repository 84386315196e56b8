using System.Globalization;
using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Editing;

/// <summary>
/// One LEMoE expert: f(k) = B SiLU(A k) with A [rank, d_ff], B [d, rank], and its routing key
/// [key_dim]. Frozen once its batch is trained. RouterBefore: the router's weights before this
/// expert's training, so that reverting the newest expert restores the adaptor exactly.
/// </summary>
public sealed class LemoeExpert
{
    public required double[] A { get; init; }
    public required double[] B { get; init; }
    public required double[] Key { get; init; }
    public required double[] RouterDownBefore { get; init; }
    public required double[] RouterUpBefore { get; init; }
}

/// <summary>
/// LEMoE's adaptor beside block <see cref="Layer"/>'s MLP (Wang &amp; Li 2024):
///   mlp_out(x) = W₀ k + g(i*|x) f_{i*}(k),   k [d_ff] the block's MLP key (the input of W₀, the down-projection)
/// KV-anchor routing, per row t of a sequence:
///   e_t = mean of the token embeddings (wte) of tokens 0..t          [d]     (causal: a row sees what it sees in training too)
///   v_t = W_up SiLU(W_down e_t)                                      [key_dim]
///   z_i = key_i · v_t,  p = softmax(z),  i* = argmax z,  g = p_{i*}  (top-1)
/// The route depends only on the tokens up to the row, so a row is routed the same in the packed
/// training forward and in inference through a KV cache. The paper mean-pools the whole input;
/// pooling causally keeps that property for generation, where the input grows. Host float64
/// arithmetic; the output is added to the backend's MLP output.
/// </summary>
public sealed class LemoeAdaptor : IMlpAdaptor
{
    private readonly float[] _wte; // [V, d], the model's token embeddings (a host copy)

    public LemoeAdaptor(Model model, LemoeHparams hp)
    {
        hp.Validate();
        var c = model.Config;
        if (hp.Layer < 0 || hp.Layer >= c.Layers) throw new ArgumentException($"LEMoE hparams layer {hp.Layer} outside the model's {c.Layers} layers");
        Layer = hp.Layer; DModel = c.DModel; DFf = c.DFf; Rank = hp.ExpertRank; RouterHidden = hp.RouterHidden; KeyDim = hp.KeyDim; Vocab = c.Vocab;
        _wte = new float[(long)c.Vocab * c.DModel];
        model.Backend.ToHost(model.Params.Wte, _wte);
        var rng = new Random(hp.Seed * 7919 + 13);
        RouterDown = Init(rng, RouterHidden * DModel, 1 / Math.Sqrt(DModel));
        RouterUp = Init(rng, KeyDim * RouterHidden, 1 / Math.Sqrt(RouterHidden));
    }

    public int Layer { get; }
    public int DModel { get; }
    public int DFf { get; }
    public int Rank { get; }
    public int RouterHidden { get; }
    public int KeyDim { get; }
    public int Vocab { get; }
    /// <summary>W_down [router_hidden, d] (row-major), trained with every new expert.</summary>
    public double[] RouterDown { get; private set; }
    /// <summary>W_up [key_dim, router_hidden].</summary>
    public double[] RouterUp { get; private set; }
    public List<LemoeExpert> Experts { get; } = [];

    internal static double[] Init(Random rng, int n, double scale)
    {
        var w = new double[n];
        for (int i = 0; i < n; i++) w[i] = (rng.NextDouble() * 2 - 1) * scale;
        return w;
    }

    /// <summary>Routing inputs e [T][d]: the causal mean of the token embeddings (history first; segments each start afresh).</summary>
    public double[][] RoutingInputs(ReadOnlySpan<int> history, ReadOnlySpan<int> ids, IReadOnlyList<int>? segments)
    {
        int T = ids.Length, d = DModel;
        if (segments is not null && history.Length > 0) throw new ArgumentException("packed segments cannot follow a KV cache's history");
        var e = new double[T][];
        var sum = new double[d];
        int count = 0;
        foreach (int id in history) { AddRow(sum, id); count++; }
        int segEnd = segments is null ? T : 0, seg = 0;
        for (int t = 0; t < T; t++)
        {
            if (segments is not null && t == segEnd)
            {
                Array.Clear(sum); count = 0;
                segEnd += segments[seg++];
            }
            AddRow(sum, ids[t]); count++;
            var row = new double[d];
            for (int j = 0; j < d; j++) row[j] = sum[j] / count;
            e[t] = row;
        }
        return e;
    }

    private void AddRow(double[] sum, int id)
    {
        if ((uint)id >= (uint)Vocab) throw new ArgumentException($"token id {id} outside the vocabulary [0, {Vocab})");
        var src = _wte.AsSpan(id * DModel, DModel);
        for (int j = 0; j < sum.Length; j++) sum[j] += src[j];
    }

    /// <summary>One row's route and what the router computed on the way (the training step differentiates through it).</summary>
    public sealed record Route(int Expert, double Gate, double[] Probs, double[] V, double[] Hidden, double[] PreHidden);

    /// <summary>The route of one routing input e [d]; Expert −1 when the adaptor has no expert yet.</summary>
    public Route RouteOf(double[] e)
    {
        int m = RouterHidden, kd = KeyDim, d = DModel, n = Experts.Count;
        var pre = new double[m]; var h = new double[m];
        for (int i = 0; i < m; i++)
        {
            double s = 0;
            for (int j = 0; j < d; j++) s += RouterDown[i * d + j] * e[j];
            pre[i] = s; h[i] = Silu(s);
        }
        var v = new double[kd];
        for (int i = 0; i < kd; i++)
        {
            double s = 0;
            for (int j = 0; j < m; j++) s += RouterUp[i * m + j] * h[j];
            v[i] = s;
        }
        if (n == 0) return new Route(-1, 0, [], v, h, pre);
        var z = new double[n];
        int best = 0;
        for (int i = 0; i < n; i++)
        {
            double s = 0;
            var key = Experts[i].Key;
            for (int j = 0; j < kd; j++) s += key[j] * v[j];
            z[i] = s;
            if (s > z[best]) best = i; // ties: the older expert
        }
        double mx = z[best], sum = 0;
        var p = new double[n];
        for (int i = 0; i < n; i++) { p[i] = Math.Exp(z[i] - mx); sum += p[i]; }
        for (int i = 0; i < n; i++) p[i] /= sum;
        return new Route(best, p[best], p, v, h, pre);
    }

    /// <summary>The expert's hidden pre-activation a = A k [rank].</summary>
    internal double[] ExpertPre(LemoeExpert ex, ReadOnlySpan<double> key)
    {
        int r = Rank, f = DFf;
        var a = new double[r];
        for (int i = 0; i < r; i++)
        {
            double s = 0;
            var row = ex.A.AsSpan(i * f, f);
            for (int j = 0; j < f; j++) s += row[j] * key[j];
            a[i] = s;
        }
        return a;
    }

    /// <summary>out [d] += gate · B SiLU(a).</summary>
    internal void ExpertOut(LemoeExpert ex, double[] a, double gate, Span<double> output)
    {
        int r = Rank, d = DModel;
        var s = new double[r];
        for (int i = 0; i < r; i++) s[i] = Silu(a[i]);
        for (int j = 0; j < d; j++)
        {
            double acc = 0;
            for (int i = 0; i < r; i++) acc += ex.B[j * r + i] * s[i];
            output[j] += gate * acc;
        }
    }

    /// <summary>||B·A||_F of an expert (the size of its bypass before the nonlinearity and the gate): √(Σ (BᵀB)∘(AAᵀ)).</summary>
    internal double BypassNorm(LemoeExpert ex)
    {
        int r = Rank, d = DModel, f = DFf;
        double s = 0;
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++)
            {
                double btb = 0, aat = 0;
                for (int k = 0; k < d; k++) btb += ex.B[(long)k * r + i] * ex.B[(long)k * r + j];
                for (int k = 0; k < f; k++) aat += ex.A[(long)i * f + k] * ex.A[(long)j * f + k];
                s += btb * aat;
            }
        return Math.Sqrt(Math.Max(0, s));
    }

    /// <summary>The expert of every row of the last forward that ran the adaptor (−1: none yet).</summary>
    public int[] LastRoutes { get; private set; } = [];

    public void Apply(IBackend backend, ReadOnlySpan<int> history, ReadOnlySpan<int> ids, IReadOnlyList<int>? segments, Tensor keys, Tensor mlpOut)
    {
        int T = ids.Length, d = DModel, f = DFf;
        var e = RoutingInputs(history, ids, segments);
        if (Experts.Count == 0) { LastRoutes = Enumerable.Repeat(-1, T).ToArray(); return; }
        var k = new double[(long)T * f];
        backend.ToHost(keys, k);
        var output = AdaptorOutput(e, k, out var routes);
        LastRoutes = routes;
        using var add = backend.FromHost(output, T, d);
        backend.Add(mlpOut, add, mlpOut);
    }

    /// <summary>The adaptor's output [T, d] for routing inputs e [T][d] and keys [T, f].</summary>
    internal double[] AdaptorOutput(double[][] e, double[] keys, out int[] routes)
    {
        int T = e.Length, d = DModel, f = DFf;
        var output = new double[(long)T * d];
        routes = new int[T];
        for (int t = 0; t < T; t++)
        {
            var route = RouteOf(e[t]);
            routes[t] = route.Expert;
            if (route.Expert < 0) continue;
            var ex = Experts[route.Expert];
            ExpertOut(ex, ExpertPre(ex, keys.AsSpan(t * f, f)), route.Gate, output.AsSpan(t * d, d));
        }
        return output;
    }

    /// <summary>
    /// Gradients of L = Σ_t G_t · out_t + routingWeight · Σ_{t: isRow[t]} −log p_n(t) with respect to
    /// expert n's A [rank, f], B [d, rank] and key [key_dim], W_down and W_up (the trainable part;
    /// the other experts and keys are frozen). e [T][d] routing inputs, keys [T, f], G [T, d].
    /// </summary>
    public (double[] A, double[] B, double[] Key, double[] Down, double[] Up) Gradients(double[][] e, double[] keys, double[] G, int n,
        bool[] isRow, double routingWeight)
    {
        int T = e.Length, d = DModel, f = DFf, rank = Rank, m = RouterHidden, kd = KeyDim;
        var ex = Experts[n];
        var gA = new double[ex.A.Length]; var gB = new double[ex.B.Length]; var gKey = new double[kd];
        var gDown = new double[RouterDown.Length]; var gUp = new double[RouterUp.Length];
        for (int t = 0; t < T; t++)
        {
            var route = RouteOf(e[t]);
            var gt = G.AsSpan(t * d, d);
            var kt = keys.AsSpan(t * f, f);
            var chosen = Experts[route.Expert];
            var a = ExpertPre(chosen, kt);
            var fout = new double[d];
            ExpertOut(chosen, a, 1.0, fout);
            double dg = 0;
            for (int j = 0; j < d; j++) dg += gt[j] * fout[j];
            if (route.Expert == n)
            {
                // out = g B SiLU(A k): dB = g G sᵀ, da = g (Bᵀ G) ⊙ SiLU'(a), dA = da kᵀ
                for (int i = 0; i < rank; i++)
                {
                    double s = Silu(a[i]), ds = 0;
                    for (int j = 0; j < d; j++) { gB[j * rank + i] += route.Gate * gt[j] * s; ds += ex.B[j * rank + i] * gt[j]; }
                    double da = route.Gate * ds * SiluGrad(a[i]);
                    if (da != 0) for (int c = 0; c < f; c++) gA[i * f + c] += da * kt[c];
                }
            }
            // gate g = p_{i*}: dz_j = dg · p_{i*} (δ_{j,i*} − p_j); routing CE: (p_j − δ_{j,n}) · weight
            int ne = route.Probs.Length;
            var dz = new double[ne];
            for (int j = 0; j < ne; j++) dz[j] = dg * route.Gate * ((j == route.Expert ? 1 : 0) - route.Probs[j]);
            if (isRow[t] && routingWeight != 0)
                for (int j = 0; j < ne; j++) dz[j] += routingWeight * (route.Probs[j] - (j == n ? 1 : 0));
            for (int c = 0; c < kd; c++) gKey[c] += dz[n] * route.V[c];
            // through the router: dv = Σ_j dz_j key_j, v = W_up h, h = SiLU(W_down e)
            var dv = new double[kd];
            for (int j = 0; j < ne; j++)
                if (dz[j] != 0) { var kj = Experts[j].Key; for (int c = 0; c < kd; c++) dv[c] += dz[j] * kj[c]; }
            var dh = new double[m];
            for (int c = 0; c < kd; c++)
                for (int i = 0; i < m; i++) { gUp[c * m + i] += dv[c] * route.Hidden[i]; dh[i] += RouterUp[c * m + i] * dv[c]; }
            for (int i = 0; i < m; i++)
            {
                double dp = dh[i] * SiluGrad(route.PreHidden[i]);
                if (dp != 0) for (int j = 0; j < d; j++) gDown[i * d + j] += dp * e[t][j];
            }
        }
        return (gA, gB, gKey, gDown, gUp);
    }

    internal static double Silu(double x) => x / (1 + Math.Exp(-x));
    internal static double SiluGrad(double x)
    {
        double s = 1 / (1 + Math.Exp(-x));
        return s * (1 + x * (1 - s));
    }

    /// <summary>Adds a new expert (the router's weights recorded first, for an exact revert).</summary>
    internal LemoeExpert AddExpert(double[] a, double[] b, double[] key)
    {
        var ex = new LemoeExpert { A = a, B = b, Key = key, RouterDownBefore = (double[])RouterDown.Clone(), RouterUpBefore = (double[])RouterUp.Clone() };
        Experts.Add(ex);
        return ex;
    }

    /// <summary>
    /// Removes expert i. For the newest expert the router is also restored to its weights before
    /// that expert was trained, so the adaptor is exactly what it was before the edit; an older
    /// expert's removal keeps the router the later edits trained.
    /// </summary>
    public void RemoveExpert(int i)
    {
        if (i < 0 || i >= Experts.Count) throw new ArgumentOutOfRangeException(nameof(i), $"LEMoE adaptor has {Experts.Count} expert(s); no expert {i}");
        if (i == Experts.Count - 1)
        {
            RouterDown = (double[])Experts[i].RouterDownBefore.Clone();
            RouterUp = (double[])Experts[i].RouterUpBefore.Clone();
        }
        Experts.RemoveAt(i);
    }

    /// <summary>
    /// Writes the adaptor (router, experts, their keys and router snapshots) as float64 safetensors,
    /// atomically; <paramref name="metadata"/> is added to the header (an edited-model folder stores
    /// the hparams and its generation there).
    /// </summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        WriteFile(path, Layer, Rank, DFf, DModel, RouterHidden, KeyDim, RouterDown, RouterUp, Experts, metadata);

    /// <summary>
    /// The file <see cref="Save"/> writes, from its parts (router down [hidden, d_model], up [key_dim,
    /// hidden]; experts in order): the journal rebuilds an adaptor this way without a model at hand.
    /// </summary>
    public static void WriteFile(string path, int layer, int rank, int dFf, int dModel, int routerHidden, int keyDim,
        double[] routerDown, double[] routerUp, IReadOnlyList<LemoeExpert> experts, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var t = Parts(rank, dFf, dModel, routerHidden, keyDim, routerDown, routerUp, experts)
            .Select(p => (p.Name, new HostTensor(p.Shape, p.Values), "F64")).ToList();
        var meta = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>(), StringComparer.Ordinal)
        {
            ["format"] = "palimpsest-lemoe", ["layer"] = layer.ToString(CultureInfo.InvariantCulture),
            ["experts"] = experts.Count.ToString(CultureInfo.InvariantCulture),
        };
        SafetensorsWriter.Write(path, t, meta);
    }

    /// <summary>
    /// The adaptor's arrays by name, with their shapes: router.down [hidden, d_model], router.up
    /// [key_dim, hidden], then per expert i experts.{i}.a [rank, f], .b [d_model, rank], .key
    /// [key_dim], .router_down_before and .router_up_before. The adaptor file and a lifelong run's
    /// saved state both hold exactly these (not copies: the adaptor's own arrays).
    /// </summary>
    internal static IEnumerable<(string Name, int[] Shape, double[] Values)> Parts(int rank, int dFf, int dModel, int routerHidden, int keyDim,
        double[] routerDown, double[] routerUp, IReadOnlyList<LemoeExpert> experts) =>
        RouterParts(routerHidden, dModel, keyDim, routerDown, routerUp)
            .Concat(experts.SelectMany((ex, i) => ExpertParts($"experts.{i}.", ex, rank, dFf, dModel, routerHidden, keyDim)));

    /// <summary>The router's arrays: router.down [hidden, d_model], router.up [key_dim, hidden].</summary>
    internal static IEnumerable<(string Name, int[] Shape, double[] Values)> RouterParts(int routerHidden, int dModel, int keyDim,
        double[] routerDown, double[] routerUp)
    {
        yield return ("router.down", [routerHidden, dModel], routerDown);
        yield return ("router.up", [keyDim, routerHidden], routerUp);
    }

    /// <summary>One expert's arrays under <paramref name="prefix"/>: a [rank, f], b [d_model, rank], key [key_dim], router_down_before, router_up_before.</summary>
    internal static IEnumerable<(string Name, int[] Shape, double[] Values)> ExpertParts(string prefix, LemoeExpert ex,
        int rank, int dFf, int dModel, int routerHidden, int keyDim)
    {
        yield return (prefix + "a", [rank, dFf], ex.A);
        yield return (prefix + "b", [dModel, rank], ex.B);
        yield return (prefix + "key", [keyDim], ex.Key);
        yield return (prefix + "router_down_before", [routerHidden, dModel], ex.RouterDownBefore);
        yield return (prefix + "router_up_before", [keyDim, routerHidden], ex.RouterUpBefore);
    }

    /// <summary>The expert <see cref="ExpertParts"/> names under <paramref name="prefix"/>, read by read(name, length).</summary>
    internal static LemoeExpert ReadExpert(string prefix, Func<string, long, double[]> read, int rank, int dFf, int dModel, int routerHidden, int keyDim) => new()
    {
        A = read(prefix + "a", (long)rank * dFf), B = read(prefix + "b", (long)dModel * rank),
        Key = read(prefix + "key", keyDim),
        RouterDownBefore = read(prefix + "router_down_before", (long)routerHidden * dModel),
        RouterUpBefore = read(prefix + "router_up_before", (long)keyDim * routerHidden),
    };

    /// <summary>This adaptor's <see cref="Parts(int, int, int, int, int, double[], double[], IReadOnlyList{LemoeExpert})"/>.</summary>
    internal IEnumerable<(string Name, int[] Shape, double[] Values)> Parts() => Parts(Rank, DFf, DModel, RouterHidden, KeyDim, RouterDown, RouterUp, Experts);

    /// <summary>
    /// The router and n experts read by the names and lengths of <see cref="Parts()"/> for this
    /// adaptor's shapes (read(name, length) fails on a missing or misshapen array); nothing is
    /// changed until <see cref="SetParts"/>.
    /// </summary>
    internal (double[] Down, double[] Up, List<LemoeExpert> Experts) ReadParts(int n, Func<string, long, double[]> read)
    {
        var down = read("router.down", (long)RouterHidden * DModel);
        var up = read("router.up", (long)KeyDim * RouterHidden);
        var experts = Enumerable.Range(0, n).Select(i => ReadExpert($"experts.{i}.", read, Rank, DFf, DModel, RouterHidden, KeyDim)).ToList();
        return (down, up, experts);
    }

    /// <summary>Replaces the router and every expert (what <see cref="ReadParts"/> read).</summary>
    internal void SetParts((double[] Down, double[] Up, List<LemoeExpert> Experts) parts)
    {
        RouterDown = parts.Down; RouterUp = parts.Up;
        Experts.Clear();
        Experts.AddRange(parts.Experts);
    }

    /// <summary>
    /// Reads an adaptor file that carries its hparams in the header ("hparams", as an edited-model
    /// folder's lemoe.safetensors does) for this model.
    /// </summary>
    public static LemoeAdaptor LoadFile(string path, Model model)
    {
        Dictionary<string, string> meta;
        using (var f = SafetensorsFile.Open(path)) meta = new Dictionary<string, string>(f.Metadata);
        if (!meta.TryGetValue("hparams", out var json))
            throw new ModelFormatException($"{path}: LEMoE adaptor without its hparams in the header (metadata 'hparams')");
        LemoeHparams hp;
        try { hp = LemoeHparams.FromJson(json, $"{path} (metadata 'hparams')"); }
        catch (ArgumentException e) { throw new ModelFormatException(e.Message); }
        return Load(path, model, hp);
    }

    /// <summary>Reads an adaptor written by <see cref="Save"/> for this model; the shapes must match hp's.</summary>
    public static LemoeAdaptor Load(string path, Model model, LemoeHparams hp)
    {
        var a = new LemoeAdaptor(model, hp);
        using var f = SafetensorsFile.Open(path);
        if (!f.Metadata.TryGetValue("format", out var fmt) || fmt != "palimpsest-lemoe")
            throw new ModelFormatException($"{path}: not a LEMoE adaptor (metadata format '{fmt}')");
        if (!int.TryParse(f.Metadata.GetValueOrDefault("layer"), CultureInfo.InvariantCulture, out int layer) || layer != hp.Layer)
            throw new ModelFormatException($"{path}: adaptor of layer {f.Metadata.GetValueOrDefault("layer")}, hparams say layer {hp.Layer}");
        if (!int.TryParse(f.Metadata.GetValueOrDefault("experts"), CultureInfo.InvariantCulture, out int n) || n < 0)
            throw new ModelFormatException($"{path}: metadata 'experts' missing or invalid");
        double[] Read(string name, long length)
        {
            if (!f.Contains(name)) throw new ModelFormatException($"{path}: tensor '{name}' missing");
            var v = f.ReadF64(name);
            if (v.LongLength != length) throw new ModelFormatException($"{path}: tensor '{name}' has {v.LongLength} values, expected {length} (hparams shapes differ)");
            return v;
        }
        a.SetParts(a.ReadParts(n, Read));
        return a;
    }
}
