using System.Runtime.Intrinsics;
using Palimpsest.Backends.Cpu;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// The one-pass gelu_tanh (its own exp) against the formula in float64, over the range activations
/// take and the far tails, on spans of every length up to three vectors (the zero-padded tail), in
/// place; and its vector lanes against its scalar path, which must agree bit for bit.
/// </summary>
public class GeluTanhTests(ITestOutputHelper output)
{
    private static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    private static float[] Inputs()
    {
        var rng = new Random(11);
        var xs = new List<float> { 0f, -0f, 1e-30f, -1e-30f, 1e-6f, -3f, 3f, -9.5f, -10f, -12f, -40f, -1e4f, 40f, 1e4f, float.MaxValue / 1e10f };
        for (int i = 0; i < 4000; i++) xs.Add((float)((rng.NextDouble() * 2 - 1) * 12));
        for (int i = 0; i < 200; i++) xs.Add((float)(rng.NextDouble() * 0.01 - 0.005));
        return [.. xs];
    }

    [Fact]
    public void Matches_the_float64_formula_in_place_on_every_tail_length()
    {
        var xs = Inputs();
        double worst = 0; float at = 0;
        for (int len = 1; len <= 24; len++)
            for (int o = 0; o + len <= xs.Length; o += 97)
            {
                var y = xs.AsSpan(o, len).ToArray();
                GeluTanh.Apply(y, y); // in place
                for (int i = 0; i < len; i++)
                {
                    double want = Gelu(xs[o + i]);
                    // relative where gelu is not tiny; near 0 against the scale of x itself
                    double err = Math.Abs(y[i] - want) / Math.Max(Math.Abs(want), Math.Max(Math.Abs(xs[o + i]) * 1e-3, 1e-37));
                    if (err > worst) { worst = err; at = xs[o + i]; }
                }
            }
        output.WriteLine($"max rel error {worst:E2} at x = {at}");
        Assert.True(worst <= 2e-6, $"gelu_tanh: max rel error {worst:E2} at x = {at}");
    }

    [Fact]
    public void The_gate_is_sigmoid_of_2u_and_vector_lanes_equal_the_scalar_path()
    {
        if (!Vector256.IsHardwareAccelerated) Assert.Skip("no 256-bit vectors here: only the scalar path runs");
        var xs = Inputs();
        var s = new float[xs.Length];
        GeluTanh.Gate(xs, s);
        var y = new float[xs.Length];
        GeluTanh.Apply(xs, y);
        int differ = 0; double worst = 0; float worstX = 0;
        for (int i = 0; i < xs.Length; i++)
        {
            if (BitConverter.SingleToInt32Bits(y[i]) != BitConverter.SingleToInt32Bits(xs[i] * GeluTanh.Scalar(xs[i]))) differ++;
            double u = Math.Sqrt(2 / Math.PI) * (xs[i] + 0.044715 * (double)xs[i] * xs[i] * xs[i]);
            double want = 1 / (1 + Math.Exp(-2 * u));
            // relative down to 1e-30 (below, exp leaves float's normal range and the gate is flushed to 0),
            // and per unit of |2u|: v = 2u rounded to float32 carries |v|·2⁻²⁴, which exp turns into that relative error
            double e = Math.Abs(s[i] - want) / Math.Max(want, 1e-30) / Math.Max(1, Math.Abs(2 * u));
            if (e > worst) { worst = e; worstX = xs[i]; }
        }
        Assert.True(differ == 0, $"{differ} of {xs.Length} values differ between the vector and scalar paths");
        Assert.True(worst <= 2e-6, $"gate: max rel error per unit of |2u| {worst:E2} at x = {worstX}");
    }
}
