using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>The float32 SIMD backend, op by op, against the float64 reference.</summary>
public sealed class SimdBackendOpTests(ITestOutputHelper output) : BackendOpSuite(output)
{
    protected override IBackend CreateBackend() => new SimdBackend();
}

/// <summary>The same on one thread: every parallel loop of the backend runs inline on the caller.</summary>
public sealed class SimdBackendSingleThreadOpTests(ITestOutputHelper output) : BackendOpSuite(output)
{
    protected override IBackend CreateBackend() => new SimdBackend(threads: 1);
}

/// <summary>
/// Every <see cref="IBackend"/> op of a backend under test (BUT) against <see cref="ReferenceBackend"/>
/// (float64), in the style of ggml's test-backend-ops: each case builds the same random inputs on
/// both backends (rounded to float32 first, so both see identical values), runs the op on both and
/// compares every tensor the op writes, and every scalar it returns.
///
/// Shapes are deliberately awkward: T = 13, d = 67, 5 heads with 1 or 5 kv heads, S = 29 keys for
/// T = 7 queries, a 1001-word vocabulary. Tolerance: max |but − ref| ≤ 1e-4 · max |ref| over the
/// tensor (normwise relative: an elementwise ratio is meaningless where ref crosses zero); failures
/// print the max abs error and the max elementwise relative error (over entries with |ref| above
/// 1e-3 of the tensor's max).
///
/// To run it on another backend: subclass with <see cref="CreateBackend"/> (the CUDA tests do).
/// </summary>
public abstract class BackendOpSuite(ITestOutputHelper output)
{
    protected abstract IBackend CreateBackend();

    protected virtual double Tolerance => 1e-4;

    private const int T = 13, D = 67, H = 5, Hd = 14, Tq = 7, S = 29, Vocab = 1001;

    /// <summary>Named cases; each builds its inputs on a <see cref="Case"/> and checks the outputs.</summary>
    private static readonly Dictionary<string, Action<Case>> Cases = BuildCases();

    public static TheoryData<string> CaseNames => new(Cases.Keys.OrderBy(k => k, StringComparer.Ordinal));

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Op_matches_reference(string name)
    {
        using var but = CreateBackend();
        using var reference = new ReferenceBackend();
        var c = new Case(reference, but, new Random(StableHash(name)), Tolerance, output);
        Cases[name](c);
        Assert.True(c.Checked > 0, $"case {name} compared nothing");
    }

    private static int StableHash(string s)
    {
        int h = 17;
        foreach (char ch in s) h = h * 31 + ch;
        return h & 0x7fffffff;
    }

    private static Dictionary<string, Action<Case>> BuildCases()
    {
        var cases = new Dictionary<string, Action<Case>>();

        // ---------------- memory ----------------
        cases["Memory.RoundTrip"] = c =>
        {
            var x = c.Rand([T, D]);
            c.Check("FromHost", x);
            var w = c.Weight(D, 5);
            c.Check("Weight", w);
            var y = c.Rand([T, D]);
            var host = c.HostValues(T * D);
            c.Run((b, t) => b.Upload(t(y), host));
            c.Check("Upload", y);
        };
        cases["Memory.Zero"] = c => { var x = c.Rand([T, D]); c.Run((b, t) => b.Zero(t(x))); c.Check("x", x); };
        cases["Memory.CopyRows"] = c =>
        {
            var src = c.Rand([T, D]); var dst = c.Rand([S, D]);
            c.Run((b, t) => b.CopyRows(t(src), 3, t(dst), 11, 7));
            c.Check("dst", dst);
        };

        cases["Memory.RowPrefix"] = c =>
        {
            // A view over the first rows shares storage: writes land in the parent, rows after it are untouched.
            var x = c.Rand([S, D]); var view = c.View(x, Tq); var y = c.Rand([Tq, D]);
            c.Run((b, t) => b.Add(t(view), t(y), t(view)));
            c.Check("parent after Add into the view", x);
            c.Run((b, t) => b.Activate(Activation.GeluTanh, t(view), t(view)));
            c.Run((b, t) => b.Axpy(0.5, t(view), t(view)));
            c.Check("parent after Activate/Axpy on the view", x);
            c.Run((b, t) => b.Zero(t(view)));
            c.Check("view after Zero", view);
            c.Check("parent after Zero(view)", x);
        };

        // ---------------- linear algebra ----------------
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
                foreach (var acc in new[] { false, true })
                    cases[$"MatMul.tA{(ta ? 1 : 0)}tB{(tb ? 1 : 0)}{(acc ? ".acc" : "")}"] = c =>
                    {
                        const int m = T, n = 41, k = D;
                        var a = ta ? c.Rand([k, m]) : c.Rand([m, k]);
                        var bb = tb ? c.Rand([n, k]) : c.Rand([k, n]);
                        var cc = c.Rand([m, n]);
                        c.Run((b, t) => b.MatMul(t(a), ta, t(bb), tb, t(cc), acc));
                        c.Check("c", cc);
                    };
        cases["MatMul.decode_row"] = c =>
        {
            var a = c.Rand([1, D]); var w = c.Rand([D, 3 * D]); var y = c.Rand([1, 3 * D]);
            c.Run((b, t) => b.MatMul(t(a), false, t(w), false, t(y)));
            c.Check("y", y);
            var head = c.Rand([Vocab, D]); var logits = c.Rand([1, Vocab]);
            c.Run((b, t) => b.MatMul(t(a), false, t(head), true, t(logits)));
            c.Check("logits", logits);
        };
        cases["AddBias"] = c => { var x = c.Rand([T, D]); var bias = c.Rand([D]); c.Run((b, t) => b.AddBias(t(x), t(bias))); c.Check("x", x); };
        foreach (var acc in new[] { false, true })
            cases[$"SumRows{(acc ? ".acc" : "")}"] = c =>
            {
                var x = c.Rand([T, D]); var dst = c.Rand([D]);
                c.Run((b, t) => b.SumRows(t(x), t(dst), acc));
                c.Check("dst", dst);
            };
        cases["Add"] = c =>
        {
            var a = c.Rand([T, D]); var bb = c.Rand([T, D]); var dst = c.Rand([T, D]);
            c.Run((b, t) => b.Add(t(a), t(bb), t(dst)));
            c.Check("dst", dst);
            c.Run((b, t) => b.Add(t(a), t(bb), t(a))); // dst aliases a
            c.Check("a (aliased dst)", a);
        };
        cases["Axpy"] = c => { var x = c.Rand([T, D]); var y = c.Rand([T, D]); c.Run((b, t) => b.Axpy(-0.37, t(x), t(y))); c.Check("y", y); };
        cases["AddToRow"] = c => { var x = c.Rand([T, D]); var v = c.Rand([D]); c.Run((b, t) => b.AddToRow(t(x), 5, t(v))); c.Check("x", x); };
        foreach (var acc in new[] { false, true })
            cases[$"GetRow{(acc ? ".acc" : "")}"] = c =>
            {
                var x = c.Rand([T, D]); var dst = c.Rand([D]);
                c.Run((b, t) => b.GetRow(t(x), 12, t(dst), acc));
                c.Check("dst", dst);
            };

        // ---------------- embeddings ----------------
        int[] ids = [0, 1000, 17, 17, 999, 3, 512, 64, 65, 1, 2, 700, 333];
        foreach (var withWpe in new[] { false, true })
        {
            cases[$"Embed{(withWpe ? ".wpe" : "")}"] = c =>
            {
                var wte = c.Rand([Vocab, D]); var wpe = c.Rand([40, D]); var dst = c.Rand([T, D]);
                c.Run((b, t) => b.Embed(ids, t(wte), withWpe ? t(wpe) : null, 9, t(dst)));
                c.Check("dst", dst);
            };
            cases[$"EmbedBackward{(withWpe ? ".wpe" : "")}"] = c =>
            {
                var dy = c.Rand([T, D]); var dwte = c.Rand([Vocab, D]); var dwpe = c.Rand([40, D]);
                c.Run((b, t) => b.EmbedBackward(ids, t(dy), t(dwte), withWpe ? t(dwpe) : null, 9));
                c.Check("dwte", dwte);
                if (withWpe) c.Check("dwpe", dwpe);
            };
        }

        // ---------------- norms ----------------
        foreach (var withBias in new[] { false, true })
        {
            cases[$"LayerNorm{(withBias ? ".bias" : "")}"] = c =>
            {
                var x = c.Rand([T, D], offset: 0.8); var g = c.Rand([D]); var bias = c.Rand([D]);
                var y = c.Zeros(T, D); var mean = c.Zeros(T); var rstd = c.Zeros(T);
                c.Run((b, t) => b.LayerNorm(t(x), t(g), withBias ? t(bias) : null, 1e-5, t(y), t(mean), t(rstd)));
                c.Check("y", y); c.Check("mean", mean); c.Check("rstd", rstd);
            };
            cases[$"LayerNormBackward{(withBias ? ".dg_db" : ".frozen")}"] = c =>
            {
                var x = c.Rand([T, D], offset: 0.8); var g = c.Rand([D]); var y = c.Zeros(T, D); var mean = c.Zeros(T); var rstd = c.Zeros(T);
                c.Run((b, t) => b.LayerNorm(t(x), t(g), null, 1e-5, t(y), t(mean), t(rstd)));
                var dy = c.Rand([T, D]); var dx = c.Rand([T, D]); var dg = c.Rand([D]); var db = c.Rand([D]);
                c.Run((b, t) => b.LayerNormBackward(t(dy), t(x), t(g), t(mean), t(rstd), t(dx), withBias ? t(dg) : null, withBias ? t(db) : null));
                c.Check("dx", dx);
                if (withBias) { c.Check("dg", dg); c.Check("db", db); }
            };
        }
        cases["RmsNorm"] = c =>
        {
            var x = c.Rand([T, D]); var g = c.Rand([D]); var y = c.Zeros(T, D); var rstd = c.Zeros(T);
            c.Run((b, t) => b.RmsNorm(t(x), t(g), 1e-6, t(y), t(rstd)));
            c.Check("y", y); c.Check("rstd", rstd);
        };
        foreach (var withDg in new[] { false, true })
            cases[$"RmsNormBackward{(withDg ? ".dg" : ".frozen")}"] = c =>
            {
                var x = c.Rand([T, D]); var g = c.Rand([D]); var y = c.Zeros(T, D); var rstd = c.Zeros(T);
                c.Run((b, t) => b.RmsNorm(t(x), t(g), 1e-6, t(y), t(rstd)));
                var dy = c.Rand([T, D]); var dx = c.Rand([T, D]); var dg = c.Rand([D]);
                c.Run((b, t) => b.RmsNormBackward(t(dy), t(x), t(g), t(rstd), t(dx), withDg ? t(dg) : null));
                c.Check("dx", dx);
                if (withDg) c.Check("dg", dg);
            };

        // ---------------- activations ----------------
        foreach (var act in Enum.GetValues<Activation>())
        {
            cases[$"Activate.{act}"] = c =>
            {
                var x = c.Rand([T, 3 * D], scale: 6); var y = c.Zeros(T, 3 * D);
                c.Run((b, t) => b.Activate(act, t(x), t(y)));
                c.Check("y", y);
                c.Run((b, t) => b.Activate(act, t(x), t(x))); // in place
                c.Check("x (in place)", x);
            };
            cases[$"ActivateBackward.{act}"] = c =>
            {
                var x = c.Rand([T, 3 * D], scale: 6); var dy = c.Rand([T, 3 * D]); var dx = c.Rand([T, 3 * D]);
                c.Run((b, t) => b.ActivateBackward(act, t(x), t(dy), t(dx)));
                c.Check("dx", dx);
            };
        }
        cases["SiluMul"] = c =>
        {
            var gate = c.Rand([T, 3 * D], scale: 6); var up = c.Rand([T, 3 * D]); var y = c.Zeros(T, 3 * D);
            c.Run((b, t) => b.SiluMul(t(gate), t(up), t(y)));
            c.Check("y", y);
        };
        cases["SiluMulBackward"] = c =>
        {
            var gate = c.Rand([T, 3 * D], scale: 6); var up = c.Rand([T, 3 * D]); var dy = c.Rand([T, 3 * D]);
            var dgate = c.Rand([T, 3 * D]); var dup = c.Rand([T, 3 * D]);
            c.Run((b, t) => b.SiluMulBackward(t(gate), t(up), t(dy), t(dgate), t(dup)));
            c.Check("dgate", dgate); c.Check("dup", dup);
        };

        // ---------------- rotary ----------------
        foreach (var interleaved in new[] { false, true })
            foreach (var rot in new[] { Hd, 6 })
                foreach (var inverse in new[] { false, true })
                    cases[$"Rope.{(interleaved ? "interleaved" : "halfsplit")}.rot{rot}{(inverse ? ".inverse" : "")}"] = c =>
                    {
                        var x = c.Rand([T, H * Hd]);
                        c.Run((b, t) => b.Rope(t(x), H, Hd, rot, interleaved, 10000.0, 250, inverse));
                        c.Check("x", x);
                    };

        // ---------------- attention ----------------
        foreach (var kv in new[] { 1, H })
            foreach (var (tq, s) in new[] { (Tq, S), (T, T), (1, S) })
            {
                cases[$"Attention.kv{kv}.T{tq}S{s}"] = Attention(kv, tq, s);
                cases[$"Attention.kv{kv}.T{tq}S{s}.cache_view"] = c =>
                {
                    // k, v as the filled prefix of a longer KV cache, as the decoder passes them.
                    var q = c.Rand([tq, H * Hd], scale: 2);
                    var kCache = c.Rand([s + 11, kv * Hd], scale: 2); var vCache = c.Rand([s + 11, kv * Hd]);
                    var o = c.Rand([tq, H * Hd]);
                    c.Run((b, t) => b.Attention(t(q), t(c.View(kCache, s)), t(c.View(vCache, s)), H, kv, Hd, t(o), null));
                    c.Check("o", o);
                };
                cases[$"AttentionBackward.kv{kv}.T{tq}S{s}"] = c =>
                {
                    var q = c.Rand([tq, H * Hd], scale: 2); var k = c.Rand([s, kv * Hd], scale: 2); var v = c.Rand([s, kv * Hd]);
                    var o = c.Zeros(tq, H * Hd); var probs = c.Zeros(H, tq, s);
                    // The saved probs come from the reference forward, so the backward is compared alone.
                    c.RunReference(r => r.Attention(c.R(q), c.R(k), c.R(v), H, kv, Hd, c.R(o), c.R(probs)));
                    var savedProbs = c.CopyOfReference(probs);
                    var dO = c.Rand([tq, H * Hd]);
                    var dq = c.Rand([tq, H * Hd]); var dk = c.Rand([s, kv * Hd]); var dv = c.Rand([s, kv * Hd]);
                    c.Run((b, t) => b.AttentionBackward(t(dO), t(q), t(k), t(v), t(savedProbs), H, kv, Hd, t(dq), t(dk), t(dv)));
                    c.Check("dq", dq); c.Check("dk", dk); c.Check("dv", dv);
                };
            }

        // prefill-length causal attention runs in query blocks of 32 rows, each over only the keys its
        // rows see: 70 rows (a last block of 6), 65 rows after 25 cached keys (a last block of 1)
        foreach (var kv in new[] { 1, H })
            foreach (var (tq, s) in new[] { (70, 70), (65, 90) })
                cases[$"Attention.kv{kv}.T{tq}S{s}.causal_blocks"] = Attention(kv, tq, s);

        // sliding windows: 1 (each query sees itself), 5 (shorter than every S here, several query blocks),
        // 20 (masks keys only for S = 29); q offset in the keys (T < S) as a KV cache passes them
        foreach (var kv in new[] { 1, H })
            foreach (var (tq, s) in new[] { (Tq, S), (T, T), (1, S) })
                foreach (var w in new[] { 1, 5, 20 })
                {
                    cases[$"Attention.kv{kv}.T{tq}S{s}.window{w}"] = c =>
                    {
                        var q = c.Rand([tq, H * Hd], scale: 2); var k = c.Rand([s, kv * Hd], scale: 2); var v = c.Rand([s, kv * Hd]);
                        var o = c.Rand([tq, H * Hd]); var probs = c.Rand([H, tq, s]);
                        c.Run((b, t) => b.Attention(t(q), t(k), t(v), H, kv, Hd, t(o), t(probs), w));
                        c.Check("o", o); c.Check("probs", probs);
                        var o2 = c.Rand([tq, H * Hd]);
                        c.Run((b, t) => b.Attention(t(q), t(k), t(v), H, kv, Hd, t(o2), null, w));
                        c.Check("o (no probs)", o2);
                        // the filled prefix of a longer cache, read in place
                        var kCache = c.Rand([s + 11, kv * Hd], scale: 2); var vCache = c.Rand([s + 11, kv * Hd]);
                        var o3 = c.Rand([tq, H * Hd]);
                        c.Run((b, t) => b.AttentionPrefix(t(q), t(kCache), t(vCache), s, H, kv, Hd, t(o3), null, w));
                        c.Check("o (cache prefix)", o3);
                    };
                    cases[$"AttentionBackward.kv{kv}.T{tq}S{s}.window{w}"] = c =>
                    {
                        var q = c.Rand([tq, H * Hd], scale: 2); var k = c.Rand([s, kv * Hd], scale: 2); var v = c.Rand([s, kv * Hd]);
                        var o = c.Zeros(tq, H * Hd); var probs = c.Zeros(H, tq, s);
                        c.RunReference(r => r.Attention(c.R(q), c.R(k), c.R(v), H, kv, Hd, c.R(o), c.R(probs), w));
                        var savedProbs = c.CopyOfReference(probs);
                        var dO = c.Rand([tq, H * Hd]);
                        var dq = c.Rand([tq, H * Hd]); var dk = c.Rand([s, kv * Hd]); var dv = c.Rand([s, kv * Hd]);
                        c.Run((b, t) => b.AttentionBackward(t(dO), t(q), t(k), t(v), t(savedProbs), H, kv, Hd, t(dq), t(dk), t(dv), w));
                        c.Check("dq", dq); c.Check("dk", dk); c.Check("dv", dv);
                    };
                }

        // ---------------- losses ----------------
        cases["LogSoftmax"] = c =>
        {
            var x = c.Rand([5, Vocab], scale: 8); var lp = c.Zeros(5, Vocab);
            c.Run((b, t) => b.LogSoftmax(t(x), t(lp)));
            c.Check("lp", lp);
        };
        foreach (var withGrad in new[] { false, true })
        {
            cases[$"CrossEntropy{(withGrad ? ".grad" : "")}"] = c =>
            {
                var x = c.Rand([6, Vocab], scale: 8); var dl = c.Rand([6, Vocab], scale: 1e-3);
                int[] targets = [3, -1, 1000, 0, 517, -1];
                c.RunScalar("loss", (b, t) => b.CrossEntropy(t(x), targets, withGrad ? t(dl) : null, 0.7));
                if (withGrad) c.Check("dlogits", dl);
            };
            cases[$"KlDivergence{(withGrad ? ".grad" : "")}"] = c =>
            {
                var x = c.Rand([4, Vocab], scale: 4); var other = c.Rand([4, Vocab], scale: 4); var lq = c.Zeros(4, Vocab);
                c.RunReference(r => r.LogSoftmax(c.R(other), c.R(lq)));
                var refLp = c.CopyOfReference(lq);
                var dl = c.Rand([4, Vocab], scale: 1e-3);
                c.RunScalar("kl", (b, t) => b.KlDivergence(t(x), t(refLp), withGrad ? t(dl) : null, 1.3));
                if (withGrad) c.Check("dlogits", dl);
            };
        }
        return cases;
    }

    /// <summary>Attention of tq queries over s keys (kv heads), with probs kept and without.</summary>
    private static Action<Case> Attention(int kv, int tq, int s) => c =>
    {
        var q = c.Rand([tq, H * Hd], scale: 2); var k = c.Rand([s, kv * Hd], scale: 2); var v = c.Rand([s, kv * Hd]);
        var o = c.Rand([tq, H * Hd]); var probs = c.Rand([H, tq, s]);
        c.Run((b, t) => b.Attention(t(q), t(k), t(v), H, kv, Hd, t(o), t(probs)));
        c.Check("o", o); c.Check("probs", probs);
        var o2 = c.Rand([tq, H * Hd]);
        c.Run((b, t) => b.Attention(t(q), t(k), t(v), H, kv, Hd, t(o2), null));
        c.Check("o (no probs)", o2);
    };

    /// <summary>A tensor that exists on both backends with the same values.</summary>
    protected sealed record Pair(Tensor Ref, Tensor But, int[] Shape);

    /// <summary>One test case: makes paired tensors, runs an op on both backends, compares.</summary>
    protected sealed class Case(IBackend reference, IBackend but, Random rng, double tolerance, ITestOutputHelper output)
    {
        public int Checked { get; private set; }

        public Tensor R(Pair p) => p.Ref;

        /// <summary>Uniform values in offset ± scale, rounded to float32 so both backends start equal.</summary>
        public Pair Rand(int[] shape, double scale = 1.0, double offset = 0.0)
        {
            long n = 1; foreach (var s in shape) n *= s;
            var host = new double[n];
            for (long i = 0; i < n; i++) host[i] = (float)(offset + scale * (2 * rng.NextDouble() - 1));
            return new Pair(reference.FromHost(host, shape), but.FromHost(host, shape), shape);
        }

        /// <summary>The first rows of p on both backends (<see cref="IBackend.RowPrefix"/>).</summary>
        public Pair View(Pair p, int rows) => new(reference.RowPrefix(p.Ref, rows), but.RowPrefix(p.But, rows), [rows, p.Shape[^1]]);

        public Pair Zeros(params int[] shape) => new(reference.Zeros(shape), but.Zeros(shape), shape);

        public Pair Weight(params int[] shape)
        {
            long n = 1; foreach (var s in shape) n *= s;
            var host = new double[n];
            for (long i = 0; i < n; i++) host[i] = 2 * rng.NextDouble() - 1; // not pre-rounded: Weight rounds
            return new Pair(reference.Weight(host.Select(v => (double)(float)v).ToArray(), shape), but.Weight(host, shape), shape);
        }

        /// <summary>Float32-exact host values for Upload.</summary>
        public double[] HostValues(int n)
        {
            var host = new double[n];
            for (int i = 0; i < n; i++) host[i] = (float)(2 * rng.NextDouble() - 1);
            return host;
        }

        /// <summary>A new pair holding the reference tensor's current values (rounded to float32).</summary>
        public Pair CopyOfReference(Pair p)
        {
            var host = new double[p.Ref.Length];
            reference.ToHost(p.Ref, host);
            for (int i = 0; i < host.Length; i++) host[i] = (float)host[i];
            return new Pair(reference.FromHost(host, p.Shape), but.FromHost(host, p.Shape), p.Shape);
        }

        public void Run(Action<IBackend, Func<Pair, Tensor>> op)
        {
            op(reference, p => p.Ref);
            op(but, p => p.But);
        }

        public void RunReference(Action<IBackend> op) => op(reference);

        public void RunScalar(string what, Func<IBackend, Func<Pair, Tensor>, double> op)
        {
            double r = op(reference, p => p.Ref), b = op(but, p => p.But);
            double err = Math.Abs(r - b);
            output.WriteLine($"{what}: ref {r:R}, {but.Name} {b:R}, abs err {err:E2}");
            Assert.True(err <= tolerance * Math.Max(Math.Abs(r), 1e-30), $"{what}: reference {r:R}, {but.Name} {b:R}, abs error {err:E2}");
            Checked++;
        }

        public void Check(string what, Pair p)
        {
            var r = new double[p.Ref.Length]; var b = new double[p.But.Length];
            Assert.Equal(r.Length, b.Length);
            reference.ToHost(p.Ref, r);
            but.ToHost(p.But, b);
            double maxRef = 0, maxAbs = 0;
            for (int i = 0; i < r.Length; i++) maxRef = Math.Max(maxRef, Math.Abs(r[i]));
            double floor = 1e-3 * maxRef, maxRel = 0; int worst = -1;
            for (int i = 0; i < r.Length; i++)
            {
                double e = Math.Abs(r[i] - b[i]);
                if (double.IsNaN(e)) e = double.PositiveInfinity;
                if (e > maxAbs) { maxAbs = e; worst = i; }
                if (Math.Abs(r[i]) > floor) maxRel = Math.Max(maxRel, e / Math.Abs(r[i]));
            }
            output.WriteLine($"{what} {p.But.ShapeString}: max |ref| {maxRef:E2}, max abs err {maxAbs:E2}, max rel err {maxRel:E2}");
            Assert.True(maxAbs <= tolerance * Math.Max(maxRef, 1e-30),
                $"{what} {p.But.ShapeString} on {but.Name}: max abs error {maxAbs:E2} (at {worst}: ref {(worst >= 0 ? r[worst] : 0):R}, got {(worst >= 0 ? b[worst] : 0):R}), " +
                $"max rel error {maxRel:E2}, max |ref| {maxRef:E2}, tolerance {tolerance:E0} relative");
            Checked++;
        }
    }
}
