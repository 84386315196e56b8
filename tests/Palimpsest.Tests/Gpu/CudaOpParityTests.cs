using Palimpsest.Backends.Cuda;
using Palimpsest.Backends;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// Every IBackend op of CudaBackend against the float64 ReferenceBackend on random inputs of
/// awkward shapes (nothing a multiple of a block size). float32 results must agree to 1e-5
/// relative L2 (float32 rounding over these sizes is ~1e-7; a wrong index gives ~1).
/// </summary>
[Trait(Gpu.Trait, Gpu.TraitValue)]
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaOpParityTests
{
    private const double Tol = 1e-5;
    private const int T = 13, D = 67, V = 1001;

    [Fact]
    public void Memory_roundtrip_zero_upload_copy_rows_and_row_prefix()
    {
        using var p = new OpPair();
        var x = p.Rand(T, D);
        p.Check(x, 0, "FromHost/ToHost");
        var up = p.Values(T * D).Select(v => (double)v).ToArray();
        p.R.Upload(x.R, up); p.G.Upload(x.G, up);
        p.Check(x, 0, "Upload");
        var dst = p.Rand(20, D);
        p.R.CopyRows(x.R, 3, dst.R, 11, 7); p.G.CopyRows(x.G, 3, dst.G, 11, 7);
        p.Check(dst, 0, "CopyRows");
        using var vr = p.R.RowPrefix(dst.R, 5);
        using var vg = p.G.RowPrefix(dst.G, 5);
        p.Check(new Both(vr, vg), 0, "RowPrefix");
        p.R.Zero(x.R); p.G.Zero(x.G);
        Assert.All(p.HostG(x.G), v => Assert.Equal(0.0, v));
        using var z = p.G.Zeros(3, 5);
        Assert.All(p.HostG(z), v => Assert.Equal(0.0, v));
    }

    [Fact]
    public void Buffers_reused_from_the_cache_come_back_zeroed_from_Zeros()
    {
        using var p = new OpPair();
        for (int round = 0; round < 3; round++)
        {
            using (var junk = p.G.FromHost(p.Values(T * D, 1, 2), T, D)) { } // same size: its buffer is cached
            using var z = p.G.Zeros(T, D);
            Assert.All(p.HostG(z), v => Assert.Equal(0.0, v));
        }
    }

    [Theory]
    [InlineData(false, false, false)]
    [InlineData(true, false, false)]
    [InlineData(false, true, false)]
    [InlineData(true, true, true)]
    [InlineData(false, false, true)]
    public void MatMul_all_transposes_and_accumulate(bool transA, bool transB, bool accumulate)
    {
        using var p = new OpPair();
        int m = T, n = D, k = 29;
        var a = p.Rand(transA ? [k, m] : [m, k]);
        var b = p.Rand(transB ? [n, k] : [k, n]);
        var c = p.Rand(m, n);
        p.R.MatMul(a.R, transA, b.R, transB, c.R, accumulate);
        p.G.MatMul(a.G, transA, b.G, transB, c.G, accumulate);
        p.Check(c, Tol, $"MatMul transA={transA} transB={transB} acc={accumulate}");
    }

    [Theory]
    [InlineData(DType.F16, 1e-3)]
    [InlineData(DType.BF16, 1e-2)]
    public void MatMul_with_narrow_weights(DType storage, double tol)
    {
        using var p = new OpPair(storage);
        var x = p.Rand(T, D);
        var w = p.Weight([D, 45]);          // x . W
        var wt = p.Weight([V, D]);          // tied head: x . wte^T
        var y = p.Zeros(T, 45);
        var logits = p.Zeros(T, V);
        p.R.MatMul(x.R, false, w.R, false, y.R); p.G.MatMul(x.G, false, w.G, false, y.G);
        p.R.MatMul(x.R, false, wt.R, true, logits.R); p.G.MatMul(x.G, false, wt.G, true, logits.G);
        p.Check(y, tol, $"x.W {storage}");
        p.Check(logits, tol, $"x.wte^T {storage}");
        var dy = p.Rand(T, 45);
        var dx = p.Zeros(T, D);
        p.R.MatMul(dy.R, false, w.R, true, dx.R); p.G.MatMul(dy.G, false, w.G, true, dx.G);
        p.Check(dx, tol, $"dy.W^T {storage}");
    }

    // IFusedLinear against the reference's composition (MatMul, AddBias, Add / Activate). One row
    // goes through gemv.cu: in = 1601 splits K over blocks, out = 1000 takes the 16-byte loads,
    // out = 45 / 21 the element-wise path; 13 rows go through cuBLAS and the epilogue kernels.
    [Theory]
    [InlineData(DType.F32, 1, 1601, 1000, 1e-5)]
    [InlineData(DType.F16, 1, 1601, 1000, 1e-3)]
    [InlineData(DType.BF16, 1, 1601, 1000, 1e-2)]
    [InlineData(DType.F16, 1, 67, 45, 1e-3)]
    [InlineData(DType.BF16, 1, 67, 45, 1e-2)]
    [InlineData(DType.F32, 13, 67, 45, 1e-5)]
    [InlineData(DType.F16, 13, 67, 1000, 1e-3)]
    public void Fused_linear_ops_match_their_composition(DType storage, int rows, int din, int dout, double tol)
    {
        using var p = new OpPair(storage);
        var x = p.Rand(rows, din);
        var w = p.Weight([din, dout], -0.2, 0.2);
        var bias = p.Weight([dout]);
        var res = p.Rand(rows, dout);
        IFusedLinear f = p.G;

        var y = p.Zeros(rows, dout);
        p.R.MatMul(x.R, false, w.R, false, y.R); p.R.AddBias(y.R, bias.R); p.R.Add(res.R, y.R, y.R);
        f.Linear(x.G, w.G, bias.G, y.G, res.G);
        p.Check(y, tol, $"Linear + bias + residual, {rows} x {din} . {din} x {dout}");

        var y2 = p.Rand(rows, dout); // garbage in y: the op overwrites it
        p.R.MatMul(x.R, false, w.R, false, y2.R);
        f.Linear(x.G, w.G, null, y2.G);
        p.Check(y2, tol, "Linear, no bias, no residual");

        // a bias without a residual: MatMul + AddBias, or (FuseBiasWithoutResidual) one row's bias in its gemv
        foreach (bool fuse in new[] { false, true })
        {
            p.G.FuseBiasWithoutResidual = fuse;
            var y3 = p.Rand(rows, dout);
            p.R.MatMul(x.R, false, w.R, false, y3.R); p.R.AddBias(y3.R, bias.R);
            f.Linear(x.G, w.G, bias.G, y3.G);
            p.Check(y3, tol, $"Linear + bias, no residual (FuseBiasWithoutResidual {fuse})");
        }
        p.G.FuseBiasWithoutResidual = false;

        var up = p.Zeros(rows, dout);
        var key = p.Zeros(rows, dout);
        p.R.MatMul(x.R, false, w.R, false, up.R); p.R.AddBias(up.R, bias.R); p.R.Activate(Activation.GeluTanh, up.R, key.R);
        f.LinearAct(Activation.GeluTanh, x.G, w.G, bias.G, up.G, key.G);
        p.Check(up, tol, "LinearAct up");
        p.Check(key, tol, "LinearAct key");

        // three weights of different widths on one input (grouped heads: k and v narrower than q)
        int dkv = Math.Max(1, dout / 3 + 5);
        var wk = p.Weight([din, dkv], -0.2, 0.2);
        var wv = p.Weight([din, dkv], -0.2, 0.2);
        var bv = p.Weight([dkv]);
        var q = p.Zeros(rows, dout); var k = p.Zeros(rows, dkv); var v = p.Zeros(rows, dkv);
        p.R.MatMul(x.R, false, w.R, false, q.R); p.R.AddBias(q.R, bias.R);
        p.R.MatMul(x.R, false, wk.R, false, k.R);
        p.R.MatMul(x.R, false, wv.R, false, v.R); p.R.AddBias(v.R, bv.R);
        f.Linear3(x.G, w.G, bias.G, q.G, wk.G, null, k.G, wv.G, bv.G, v.G);
        p.Check(q, tol, "Linear3 q");
        p.Check(k, tol, "Linear3 k (no bias)");
        p.Check(v, tol, "Linear3 v");
    }

    // One-row products of narrow weights read a transposed twin of the weight: it must follow every
    // write to the weight (Upload, CopyRows, Zero), and agree with gemv_xw on the weight itself.
    [Theory]
    [InlineData(DType.F16, 1e-3)]
    [InlineData(DType.BF16, 1e-2)]
    public void Weight_twins_follow_writes_to_the_weight(DType storage, double tol)
    {
        using var p = new OpPair(storage);
        IFusedLinear f = p.G;
        var x = p.Rand(1, 1600);
        var w = p.Weight([1600, 203], -0.2, 0.2);
        var bias = p.Weight([203]);
        var y = p.Zeros(1, 203);
        void Check(string what)
        {
            p.R.MatMul(x.R, false, w.R, false, y.R); p.R.AddBias(y.R, bias.R);
            f.Linear(x.G, w.G, bias.G, y.G);
            p.Check(y, tol, what);
        }
        Check("first product (twin made)");
        var fresh = p.Values(1600 * 203, -0.2, 0.2).Select(v => (double)v).ToArray();
        p.R.Upload(w.R, fresh); p.G.Upload(w.G, fresh);
        var stored = p.HostG(w.G);                 // the reference must see the narrow-rounded values
        p.R.Upload(w.R, stored);
        Check("after Upload");
        var rows = p.Weight([10, 203], -0.2, 0.2);
        p.R.CopyRows(rows.R, 2, w.R, 1500, 7); p.G.CopyRows(rows.G, 2, w.G, 1500, 7);
        Check("after CopyRows into it");
        p.R.Zero(w.R); p.G.Zero(w.G);
        Check("after Zero");
        p.G.TransposedWeightCopies = false;
        var twinless = p.Zeros(1, 203);
        f.Linear(x.G, w.G, bias.G, twinless.G);
        p.G.TransposedWeightCopies = true;
        p.R.MatMul(x.R, false, w.R, false, twinless.R); p.R.AddBias(twinless.R, bias.R);
        p.Check(twinless, tol, "gemv_xw without the twin");
    }

    // Linear3 over three weights of one shape and several rows: one batched cuBLAS product
    // (pointer arrays uploaded per call), run twice so the second call takes the next pointer slot.
    [Theory]
    [InlineData(DType.F16, 1e-3)]
    [InlineData(DType.BF16, 1e-2)]
    public void Linear3_with_equal_widths_runs_as_one_batched_product(DType storage, double tol)
    {
        using var p = new OpPair(storage);
        IFusedLinear f = p.G;
        for (int round = 0; round < 2; round++)
        {
            var x = p.Rand(T, D);
            var w = new[] { p.Weight([D, 45], -0.2, 0.2), p.Weight([D, 45], -0.2, 0.2), p.Weight([D, 45], -0.2, 0.2) };
            var b = new[] { p.Weight([45]), p.Weight([45]), p.Weight([45]) };
            var y = new[] { p.Rand(T, 45), p.Rand(T, 45), p.Rand(T, 45) };
            for (int i = 0; i < 3; i++) { p.R.MatMul(x.R, false, w[i].R, false, y[i].R); p.R.AddBias(y[i].R, b[i].R); }
            f.Linear3(x.G, w[0].G, b[0].G, y[0].G, w[1].G, b[1].G, y[1].G, w[2].G, b[2].G, y[2].G);
            for (int i = 0; i < 3; i++) p.Check(y[i], tol, $"batched Linear3 output {i}, round {round}");
        }
    }

    // A wide N that is no multiple of 128 runs as an aligned product plus the rest: both layouts of b.
    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F16, 1e-3)]
    public void MatMul_wide_odd_n_split_in_two_matches(DType storage, double tol)
    {
        using var p = new OpPair(storage);
        const int n = 4100; // 4096 + 4
        var x = p.Rand(T, 29);
        var wt = p.Weight([n, 29], -0.2, 0.2); // x . wt^T (a head)
        var w = p.Weight([29, n], -0.2, 0.2);  // x . w
        var y1 = p.Rand(T, n);
        var y2 = p.Rand(T, n);
        p.R.MatMul(x.R, false, wt.R, true, y1.R, accumulate: true); p.G.MatMul(x.G, false, wt.G, true, y1.G, accumulate: true);
        p.R.MatMul(x.R, false, w.R, false, y2.R); p.G.MatMul(x.G, false, w.G, false, y2.G);
        p.Check(y1, tol, $"x . W^T, N = {n}, accumulate");
        p.Check(y2, tol, $"x . W, N = {n}");
    }

    // One-row MatMul (gemv.cu): x . W, x . W^T (a tied head, K % 8 == 0 and not), accumulating into
    // a tensor whose zero-fill is still pending, and the result identical bit for bit when repeated.
    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F16, 1e-3)]
    [InlineData(DType.BF16, 1e-2)]
    public void One_row_matmul_matches_and_repeats_bit_for_bit(DType storage, double tol)
    {
        using var p = new OpPair(storage);
        foreach (int k in new[] { 1600, 67 })
        {
            var x = p.Rand(1, k);
            var head = p.Weight([V, k], -0.2, 0.2);
            var logits = p.Rand(1, V);
            p.R.MatMul(x.R, false, head.R, true, logits.R, accumulate: true);
            p.G.MatMul(x.G, false, head.G, true, logits.G, accumulate: true);
            p.Check(logits, tol, $"x . head^T accumulate, K = {k}");

            var w = p.Weight([k, 2056], -0.2, 0.2);
            var y = p.Zeros(1, 2056); // Zeros defers its fill: accumulate must settle it
            p.R.MatMul(x.R, false, w.R, false, y.R, accumulate: true);
            p.G.MatMul(x.G, false, w.G, false, y.G, accumulate: true);
            p.Check(y, tol, $"x . W accumulate into fresh zeros, K = {k}");
            var first = p.HostG(y.G);
            p.G.MatMul(x.G, false, w.G, false, y.G);
            Assert.Equal(first, p.HostG(y.G)); // split-K partials summed in a fixed order
        }
    }

    [Fact]
    public void Bias_row_sums_add_axpy_and_rows()
    {
        using var p = new OpPair();
        var x = p.Rand(T, D);
        var bias = p.Weight([D]);
        p.R.AddBias(x.R, bias.R); p.G.AddBias(x.G, bias.G);
        p.Check(x, Tol, "AddBias");
        var s = p.Rand(D);
        p.R.SumRows(x.R, s.R, true); p.G.SumRows(x.G, s.G, true);
        p.Check(s, Tol, "SumRows accumulate");
        p.R.SumRows(x.R, s.R, false); p.G.SumRows(x.G, s.G, false);
        p.Check(s, Tol, "SumRows overwrite");
        var y = p.Rand(T, D);
        p.R.Add(x.R, y.R, y.R); p.G.Add(x.G, y.G, y.G);
        p.Check(y, Tol, "Add (dst aliases b)");
        p.R.Axpy(-0.37, x.R, y.R); p.G.Axpy(-0.37, x.G, y.G);
        p.Check(y, Tol, "Axpy");
        var v = p.Rand(D);
        p.R.AddToRow(y.R, 11, v.R); p.G.AddToRow(y.G, 11, v.G);
        p.Check(y, Tol, "AddToRow");
        var r = p.Rand(D);
        p.R.GetRow(y.R, 5, r.R, true); p.G.GetRow(y.G, 5, r.G, true);
        p.Check(r, Tol, "GetRow accumulate");
        p.R.GetRow(y.R, 12, r.R, false); p.G.GetRow(y.G, 12, r.G, false);
        p.Check(r, Tol, "GetRow overwrite");
    }

    [Theory]
    [InlineData(DType.F32, 1e-5)]
    [InlineData(DType.F16, 1e-3)]
    [InlineData(DType.BF16, 1e-2)]
    public void Embed_with_positions_and_backward(DType storage, double tol)
    {
        using var p = new OpPair(storage);
        var wte = p.Weight([V, D]);
        var wpe = p.Weight([40, D]);
        int[] ids = Enumerable.Range(0, T).Select(_ => p.Int(V)).ToArray();
        ids[4] = ids[9]; // a repeated id: the backward must add both rows
        var x = p.Zeros(T, D);
        p.R.Embed(ids, wte.R, wpe.R, 5, x.R); p.G.Embed(ids, wte.G, wpe.G, 5, x.G);
        p.Check(x, tol, "Embed + wpe");
        p.R.Embed(ids, wte.R, null, 0, x.R); p.G.Embed(ids, wte.G, null, 0, x.G);
        p.Check(x, tol, "Embed");
        Assert.Throws<ArgumentOutOfRangeException>(() => p.G.Embed([0, V], wte.G, null, 0, p.G.Zeros(2, D)));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.G.Embed(ids, wte.G, wpe.G, 30, x.G));

        var dy = p.Rand(T, D);
        var dwte = p.Rand(V, D);
        var dwpe = p.Rand(40, D);
        p.R.EmbedBackward(ids, dy.R, dwte.R, dwpe.R, 5); p.G.EmbedBackward(ids, dy.G, dwte.G, dwpe.G, 5);
        p.Check(dwte, Tol, "EmbedBackward dwte");
        p.Check(dwpe, Tol, "EmbedBackward dwpe");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LayerNorm_forward_and_backward(bool withBias)
    {
        using var p = new OpPair();
        var x = p.Rand([T, D], -3, 5); // an offset mean: the two-pass variance matters
        var g = p.Weight([D], 0.5, 1.5);
        var b = p.Weight([D]);
        var y = p.Zeros(T, D); var mean = p.Zeros(T); var rstd = p.Zeros(T);
        p.R.LayerNorm(x.R, g.R, withBias ? b.R : null, 1e-5, y.R, mean.R, rstd.R);
        p.G.LayerNorm(x.G, g.G, withBias ? b.G : null, 1e-5, y.G, mean.G, rstd.G);
        p.Check(y, Tol, "LayerNorm y");
        p.Check(mean, Tol, "LayerNorm mean");
        p.Check(rstd, Tol, "LayerNorm rstd");

        var dy = p.Rand(T, D);
        var dx = p.Rand(T, D); // accumulates onto what is there
        var dg = p.Rand(D); var db = p.Rand(D);
        p.R.LayerNormBackward(dy.R, x.R, g.R, mean.R, rstd.R, dx.R, dg.R, withBias ? db.R : null);
        p.G.LayerNormBackward(dy.G, x.G, g.G, mean.G, rstd.G, dx.G, dg.G, withBias ? db.G : null);
        p.Check(dx, Tol, "LayerNormBackward dx");
        p.Check(dg, Tol, "LayerNormBackward dg");
        p.Check(db, Tol, "LayerNormBackward db");
        p.R.LayerNormBackward(dy.R, x.R, g.R, mean.R, rstd.R, dx.R, null, null);
        p.G.LayerNormBackward(dy.G, x.G, g.G, mean.G, rstd.G, dx.G, null, null);
        p.Check(dx, Tol, "LayerNormBackward dx (frozen g, b)");
    }

    [Fact]
    public void RmsNorm_forward_and_backward()
    {
        using var p = new OpPair();
        var x = p.Rand([T, D], -2, 2);
        var g = p.Weight([D], 0.5, 1.5);
        var y = p.Zeros(T, D); var rstd = p.Zeros(T);
        p.R.RmsNorm(x.R, g.R, 1e-6, y.R, rstd.R); p.G.RmsNorm(x.G, g.G, 1e-6, y.G, rstd.G);
        p.Check(y, Tol, "RmsNorm y");
        p.Check(rstd, Tol, "RmsNorm rstd");
        var dy = p.Rand(T, D);
        var dx = p.Rand(T, D);
        var dg = p.Rand(D);
        p.R.RmsNormBackward(dy.R, x.R, g.R, rstd.R, dx.R, dg.R); p.G.RmsNormBackward(dy.G, x.G, g.G, rstd.G, dx.G, dg.G);
        p.Check(dx, Tol, "RmsNormBackward dx");
        p.Check(dg, Tol, "RmsNormBackward dg");
        p.R.RmsNormBackward(dy.R, x.R, g.R, rstd.R, dx.R, null); p.G.RmsNormBackward(dy.G, x.G, g.G, rstd.G, dx.G, null);
        p.Check(dx, Tol, "RmsNormBackward dx (frozen g)");
    }

    [Theory]
    [InlineData(Activation.GeluTanh)]
    [InlineData(Activation.GeluErf)]
    [InlineData(Activation.Relu)]
    [InlineData(Activation.Silu)]
    public void Activation_forward_and_backward(Activation act)
    {
        using var p = new OpPair();
        var x = p.Rand([T, 301], -8, 8); // reaches both saturated tails
        var y = p.Zeros(T, 301);
        p.R.Activate(act, x.R, y.R); p.G.Activate(act, x.G, y.G);
        p.Check(y, Tol, $"{act}");
        var dy = p.Rand(T, 301);
        var dx = p.Rand(T, 301);
        p.R.ActivateBackward(act, x.R, dy.R, dx.R); p.G.ActivateBackward(act, x.G, dy.G, dx.G);
        p.Check(dx, Tol, $"{act} backward");
    }

    [Fact]
    public void SiluMul_forward_and_backward()
    {
        using var p = new OpPair();
        var gate = p.Rand([T, 172], -6, 6);
        var up = p.Rand(T, 172);
        var y = p.Zeros(T, 172);
        p.R.SiluMul(gate.R, up.R, y.R); p.G.SiluMul(gate.G, up.G, y.G);
        p.Check(y, Tol, "SiluMul");
        var dy = p.Rand(T, 172);
        var dgate = p.Rand(T, 172); var dup = p.Rand(T, 172);
        p.R.SiluMulBackward(gate.R, up.R, dy.R, dgate.R, dup.R); p.G.SiluMulBackward(gate.G, up.G, dy.G, dgate.G, dup.G);
        p.Check(dgate, Tol, "SiluMulBackward dgate");
        p.Check(dup, Tol, "SiluMulBackward dup");
    }

    [Theory]
    [InlineData(true, 8, 0)]
    [InlineData(false, 6, 0)]
    [InlineData(false, 14, 300)]   // full-width half-split (Llama), far positions
    [InlineData(true, 14, 17)]
    public void Rope_forward_and_inverse(bool interleaved, int rotaryDim, int posOffset)
    {
        using var p = new OpPair();
        int heads = 5, hd = 14;
        var x = p.Rand(T, heads * hd);
        var x0 = p.HostG(x.G);
        p.R.Rope(x.R, heads, hd, rotaryDim, interleaved, 10000, posOffset, false);
        p.G.Rope(x.G, heads, hd, rotaryDim, interleaved, 10000, posOffset, false);
        p.Check(x, Tol, $"Rope interleaved={interleaved} rotaryDim={rotaryDim}");
        p.R.Rope(x.R, heads, hd, rotaryDim, interleaved, 10000, posOffset, true);
        p.G.Rope(x.G, heads, hd, rotaryDim, interleaved, 10000, posOffset, true);
        p.Check(x, Tol, "Rope inverse");
        Num.AssertClose(p.HostG(x.G), x0, Tol, "Rope inverse restores the input");
    }

    [Theory]
    [InlineData(5, 5, 13, 13)]
    [InlineData(5, 1, 13, 13)]   // multi-query
    [InlineData(6, 2, 7, 29)]    // grouped, cached: 7 queries after 22 cached keys
    [InlineData(5, 5, 1, 300)]   // one decode step over a long cache
    [InlineData(3, 3, 45, 45)]   // three query tiles of the tiled kernel, the last one partial
    [InlineData(4, 2, 37, 101)]  // grouped, 64 cached keys, rows straddling key tiles
    public void Attention_forward_and_backward(int heads, int kvHeads, int t, int s)
    {
        using var p = new OpPair();
        int hd = 19;
        var q = p.Rand(t, heads * hd);
        var k = p.Rand(s, kvHeads * hd);
        var v = p.Rand(s, kvHeads * hd);
        var o = p.Rand(t, heads * hd);
        var probs = p.Rand(heads, t, s);
        var dO = p.Rand(t, heads * hd);
        var dq = p.Rand(t, heads * hd); var dk = p.Rand(s, kvHeads * hd); var dv = p.Rand(s, kvHeads * hd);
        p.R.Attention(q.R, k.R, v.R, heads, kvHeads, hd, o.R, probs.R);
        p.R.AttentionBackward(dO.R, q.R, k.R, v.R, probs.R, heads, kvHeads, hd, dq.R, dk.R, dv.R);
        // the same test over every implementation the backend has for this shape
        foreach (var path in AttentionPaths(heads, kvHeads))
        {
            p.G.AttentionPath = path;
            try
            {
                string what = $"Attention ({path}) H={heads} Hkv={kvHeads} T={t} S={s}";
                p.G.Attention(q.G, k.G, v.G, heads, kvHeads, hd, o.G, probs.G);
                p.Check(o, Tol, what + " o");
                p.Check(probs, Tol, what + " probs");
                var o2 = p.Rand(t, heads * hd);
                p.G.Attention(q.G, k.G, v.G, heads, kvHeads, hd, o2.G, null);
                Num.AssertClose(p.HostG(o2.G), p.HostR(o.R), Tol, what + " without probs");
                p.G.AttentionBackward(dO.G, q.G, k.G, v.G, probs.G, heads, kvHeads, hd, dq.G, dk.G, dv.G);
                p.Check(dq, Tol, what + " backward dq");
                p.Check(dk, Tol, what + " backward dk");
                p.Check(dv, Tol, what + " backward dv");
            }
            finally { p.G.AttentionPath = AttentionPath.Auto; }
        }
    }

    // Auto, each kernel, and the cuBLAS path where it applies (one kv head per head).
    private static AttentionPath[] AttentionPaths(int heads, int kvHeads) => heads == kvHeads
        ? [AttentionPath.Auto, AttentionPath.SimpleKernel, AttentionPath.TiledKernel, AttentionPath.Gemm]
        : [AttentionPath.Auto, AttentionPath.SimpleKernel, AttentionPath.TiledKernel];

    [Fact]
    public void Gemm_attention_path_refuses_grouped_heads()
    {
        using var p = new OpPair();
        int hd = 8, heads = 4, kvHeads = 2, t = 20;
        var q = p.Rand(t, heads * hd); var k = p.Rand(t, kvHeads * hd); var v = p.Rand(t, kvHeads * hd); var o = p.Rand(t, heads * hd);
        p.G.AttentionPath = AttentionPath.Gemm;
        try
        {
            var e = Assert.Throws<ArgumentException>(() => p.G.Attention(q.G, k.G, v.G, heads, kvHeads, hd, o.G, null));
            Assert.Contains("kv head per head", e.Message);
        }
        finally { p.G.AttentionPath = AttentionPath.Auto; }
    }

    /// <summary>
    /// The tiled forward kernel against the simple one-row-per-block kernel kept beside it and
    /// against the float64 reference, at head sizes that use 1, 3 and 8 output columns per lane
    /// (256: the largest, whose shared memory needs the opt-in past 48 KiB), cached and packed.
    /// </summary>
    [Theory]
    [InlineData(32, 33, 33, null)]
    [InlineData(80, 21, 70, null)]
    [InlineData(256, 18, 18, new[] { 4, 9, 5 })]
    public void Tiled_attention_matches_the_simple_kernel(int hd, int t, int s, int[]? lengths)
    {
        using var p = new OpPair();
        int heads = 2, kvHeads = 1;
        var q = p.Rand(t, heads * hd);
        var k = p.Rand(s, kvHeads * hd);
        var v = p.Rand(s, kvHeads * hd);
        var o = p.Rand(t, heads * hd);
        var probs = p.Rand(heads, t, s);
        void Run(Palimpsest.Backends.IBackend b, Tensor o1, Tensor p1)
        {
            if (lengths is null) b.Attention(q.Pick(b), k.Pick(b), v.Pick(b), heads, kvHeads, hd, o1, p1);
            else ((Palimpsest.Backends.ISegmentAttention)b).AttentionSegments(q.Pick(b), k.Pick(b), v.Pick(b), lengths, heads, kvHeads, hd, o1, p1);
        }
        Run(p.R, o.R, probs.R);
        Run(p.G, o.G, probs.G);
        string what = $"tiled attention hd={hd} T={t} S={s}{(lengths is null ? "" : " packed")}";
        p.Check(o, Tol, what + " o");
        p.Check(probs, Tol, what + " probs");
        var o2 = p.Rand(t, heads * hd); var probs2 = p.Rand(heads, t, s);
        p.G.AttentionPath = AttentionPath.SimpleKernel;
        try { Run(p.G, o2.G, probs2.G); }
        finally { p.G.AttentionPath = AttentionPath.Auto; }
        Num.AssertClose(p.HostG(o.G), p.HostG(o2.G), Tol, what + " o, tiled vs simple kernel");
        Num.AssertClose(p.HostG(probs.G), p.HostG(probs2.G), Tol, what + " probs, tiled vs simple kernel");
    }

    [Theory]
    [InlineData(3, 3, new[] { 5, 1, 7 })]        // awkward lengths, one single-token segment
    [InlineData(6, 2, new[] { 13, 300, 2 })]     // grouped heads, one segment longer than a block
    [InlineData(4, 4, new[] { 21, 3, 40, 1 })]   // the GEMM path: T = 65, segments across key tiles
    public void Packed_segment_attention_and_its_backward(int heads, int kvHeads, int[] lengths)
    {
        using var p = new OpPair();
        int hd = 19, t = lengths.Sum();
        var q = p.Rand(t, heads * hd);
        var k = p.Rand(t, kvHeads * hd);
        var v = p.Rand(t, kvHeads * hd);
        var o = p.Rand(t, heads * hd);
        var probs = p.Rand(heads, t, t); // every entry written, the masked ones with 0
        var dO = p.Rand(t, heads * hd);
        var dq = p.Rand(t, heads * hd); var dk = p.Rand(t, kvHeads * hd); var dv = p.Rand(t, kvHeads * hd);
        p.R.AttentionSegments(q.R, k.R, v.R, lengths, heads, kvHeads, hd, o.R, probs.R);
        p.R.AttentionSegmentsBackward(dO.R, q.R, k.R, v.R, probs.R, lengths, heads, kvHeads, hd, dq.R, dk.R, dv.R);
        foreach (var path in AttentionPaths(heads, kvHeads))
        {
            p.G.AttentionPath = path;
            try
            {
                string what = $"AttentionSegments ({path}) H={heads} Hkv={kvHeads} lengths [{string.Join(", ", lengths)}]";
                p.G.AttentionSegments(q.G, k.G, v.G, lengths, heads, kvHeads, hd, o.G, probs.G);
                p.Check(o, Tol, what + " o");
                p.Check(probs, Tol, what + " probs");

                // the segment-aware backward (the kernels skip the zeros between segments) against the
                // reference, and the plain backward over the whole [T, ·] (the masked probs doing the
                // masking) against both
                p.G.AttentionSegmentsBackward(dO.G, q.G, k.G, v.G, probs.G, lengths, heads, kvHeads, hd, dq.G, dk.G, dv.G);
                p.Check(dq, Tol, what + " dq");
                p.Check(dk, Tol, what + " dk");
                p.Check(dv, Tol, what + " dv");
                var dq2 = p.Rand(t, heads * hd); var dk2 = p.Rand(t, kvHeads * hd); var dv2 = p.Rand(t, kvHeads * hd);
                p.G.AttentionBackward(dO.G, q.G, k.G, v.G, probs.G, heads, kvHeads, hd, dq2.G, dk2.G, dv2.G);
                p.Check(dq2 with { R = dq.R }, Tol, what + " plain backward dq");
                p.Check(dk2 with { R = dk.R }, Tol, what + " plain backward dk");
                p.Check(dv2 with { R = dv.R }, Tol, what + " plain backward dv");
            }
            finally { p.G.AttentionPath = AttentionPath.Auto; }
        }
    }

    [Fact]
    public void LogSoftmax_cross_entropy_and_kl_with_gradients()
    {
        using var p = new OpPair();
        var logits = p.Rand([T, V], -6, 6);
        var lp = p.Zeros(T, V);
        p.R.LogSoftmax(logits.R, lp.R); p.G.LogSoftmax(logits.G, lp.G);
        p.Check(lp, Tol, "LogSoftmax");

        int[] targets = Enumerable.Range(0, T).Select(i => i % 4 == 1 ? -1 : p.Int(V)).ToArray();
        var dl = p.Rand(T, V); // accumulates
        double ceR = p.R.CrossEntropy(logits.R, targets, dl.R, 0.7);
        double ceG = p.G.CrossEntropy(logits.G, targets, dl.G, 0.7);
        p.CheckScalar(ceG, ceR, Tol, "CrossEntropy");
        p.Check(dl, Tol, "CrossEntropy dlogits");
        Assert.Equal(0.0, p.G.CrossEntropy(logits.G, Enumerable.Repeat(-1, T).ToArray(), null));
        Assert.Throws<ArgumentOutOfRangeException>(() => p.G.CrossEntropy(logits.G, Enumerable.Repeat(V, T).ToArray(), null));

        var other = p.Rand([T, V], -6, 6);
        var refLp = p.Zeros(T, V);
        p.R.LogSoftmax(other.R, refLp.R); p.G.LogSoftmax(other.G, refLp.G);
        var dk = p.Rand(T, V);
        double klR = p.R.KlDivergence(logits.R, refLp.R, dk.R, 1.3);
        double klG = p.G.KlDivergence(logits.G, refLp.G, dk.G, 1.3);
        p.CheckScalar(klG, klR, Tol, "KlDivergence");
        p.Check(dk, Tol, "KlDivergence dlogits");
    }
}
