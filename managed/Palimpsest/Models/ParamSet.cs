namespace Palimpsest.Models;

/// <summary>
/// The parameters of one transformer block in canonical form (every architecture maps onto it).
/// Matrices are [in, out]: a linear layer is y = x · W + b.
///   Ln1G/Ln1B [d]; Ln2G/Ln2B [d] (null for GPT-J's shared norm)
///   Wq [d, H·hd]  Wk, Wv [d, Hkv·hd]  Wo [H·hd, d]  (+ biases of the out size when present)
///   WUp [d, f] (+ BUp [f]), WGate [d, f] (SwiGLU only), WDown [f, d] (+ BDown [d])
/// </summary>
public sealed class BlockParams<T> where T : class
{
    public required T Ln1G; public T? Ln1B;
    public T? Ln2G; public T? Ln2B;
    public required T Wq; public T? Bq;
    public required T Wk; public T? Bk;
    public required T Wv; public T? Bv;
    public required T Wo; public T? Bo;
    public required T WUp; public T? BUp;
    public T? WGate;
    public required T WDown; public T? BDown;

    /// <summary>Every present parameter with its canonical name ("ln1.g", "wq", ...).</summary>
    public IEnumerable<(string Name, T Value)> Named()
    {
        (string, T?)[] all =
        [
            ("ln1.g", Ln1G), ("ln1.b", Ln1B), ("ln2.g", Ln2G), ("ln2.b", Ln2B),
            ("wq", Wq), ("bq", Bq), ("wk", Wk), ("bk", Bk), ("wv", Wv), ("bv", Bv), ("wo", Wo), ("bo", Bo),
            ("wup", WUp), ("bup", BUp), ("wgate", WGate), ("wdown", WDown), ("bdown", BDown),
        ];
        foreach (var (n, v) in all) if (v is not null) yield return (n, v);
    }

    public BlockParams<U> Map<U>(Func<string, T, U> f) where U : class
    {
        U? M(string n, T? v) => v is null ? null : f(n, v);
        return new BlockParams<U>
        {
            Ln1G = f("ln1.g", Ln1G), Ln1B = M("ln1.b", Ln1B), Ln2G = M("ln2.g", Ln2G), Ln2B = M("ln2.b", Ln2B),
            Wq = f("wq", Wq), Bq = M("bq", Bq), Wk = f("wk", Wk), Bk = M("bk", Bk), Wv = f("wv", Wv), Bv = M("bv", Bv),
            Wo = f("wo", Wo), Bo = M("bo", Bo), WUp = f("wup", WUp), BUp = M("bup", BUp), WGate = M("wgate", WGate),
            WDown = f("wdown", WDown), BDown = M("bdown", BDown),
        };
    }
}

/// <summary>
/// All parameters of a model in canonical form.
///   Wte [V, d]; Wpe [P, d] (learned positions only); Blocks[L]; LnFG/LnFB [d];
///   Head [V, d] (the same object as Wte when tied) and HeadB [V] (GPT-J).
/// Logits = x · Headᵀ (+ HeadB).
/// </summary>
public sealed class ParamSet<T> where T : class
{
    public required T Wte; public T? Wpe;
    public required BlockParams<T>[] Blocks;
    public required T LnFG; public T? LnFB;
    public required T Head; public T? HeadB;

    public bool Tied => ReferenceEquals(Head, Wte);

    /// <summary>Every parameter once (the tied head is not repeated), named "wte", "h3.wq", "lnf.g", ...</summary>
    public IEnumerable<(string Name, T Value)> Named()
    {
        yield return ("wte", Wte);
        if (Wpe is not null) yield return ("wpe", Wpe);
        for (int i = 0; i < Blocks.Length; i++)
            foreach (var (n, v) in Blocks[i].Named()) yield return ($"h{i}.{n}", v);
        yield return ("lnf.g", LnFG);
        if (LnFB is not null) yield return ("lnf.b", LnFB);
        if (!Tied) yield return ("head", Head);
        if (HeadB is not null) yield return ("head.b", HeadB);
    }

    /// <summary>Same structure with every parameter mapped; a tied head stays tied.</summary>
    public ParamSet<U> Map<U>(Func<string, T, U> f) where U : class
    {
        var wte = f("wte", Wte);
        return new ParamSet<U>
        {
            Wte = wte, Wpe = Wpe is null ? null : f("wpe", Wpe),
            Blocks = Blocks.Select((b, i) => b.Map((n, v) => f($"h{i}.{n}", v))).ToArray(),
            LnFG = f("lnf.g", LnFG), LnFB = LnFB is null ? null : f("lnf.b", LnFB),
            Head = Tied ? wte : f("head", Head), HeadB = HeadB is null ? null : f("head.b", HeadB),
        };
    }
}
