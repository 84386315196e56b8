using System.Text.Json;
using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// Rope scaling against torch: tests/fixtures/rope/rope-scaling.json holds the float32 inverse
/// frequencies and angles that transformers' formulas give in torch (generate.py beside it). The
/// config goes through ModelConfig.Parse, so the fields are read as a checkpoint's would be.
/// </summary>
public class RopeScalingTests
{
    private static JsonElement Cases()
    {
        string path = Path.Combine(Paths.RepoRoot, "tests", "fixtures", "rope", "rope-scaling.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("cases").Clone();
    }

    public static TheoryData<string> Names() => new(Cases().EnumerateArray().Select(c => c.GetProperty("name").GetString()!));

    // "0x1.a115820000000p-1" -> the double it spells (Python's float.hex)
    private static double ParseHex(string s)
    {
        bool neg = s.StartsWith('-');
        if (neg) s = s[1..];
        int p = s.IndexOf('p');
        string mant = s[2..p];
        int exp = int.Parse(s[(p + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        int dot = mant.IndexOf('.');
        string digits = dot < 0 ? mant : mant.Remove(dot, 1);
        int fracDigits = dot < 0 ? 0 : mant.Length - dot - 1;
        double v = 0;
        foreach (char ch in digits) v = v * 16 + Convert.ToInt32(ch.ToString(), 16);
        v = Math.ScaleB(v, exp - 4 * fracDigits);
        return neg ? -v : v;
    }

    [Theory, MemberData(nameof(Names))]
    public void Inverse_frequencies_and_angles_equal_torchs_bit_for_bit(string name)
    {
        var c = Cases().EnumerateArray().Single(x => x.GetProperty("name").GetString() == name);
        int dim = c.GetProperty("dim").GetInt32();
        string scaling = c.GetProperty("scaling").ValueKind == JsonValueKind.Null ? "" : $", \"rope_scaling\": {c.GetProperty("scaling").GetRawText()}";
        string json = $$"""
            {"model_type": "llama", "hidden_size": {{dim * 2}}, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 8,
             "vocab_size": 10, "max_position_embeddings": 131072, "rope_theta": {{c.GetProperty("theta").GetDouble().ToString("R", System.Globalization.CultureInfo.InvariantCulture)}}{{scaling}}}
            """;
        using var doc = JsonDocument.Parse(json);
        var config = ModelConfig.Parse(doc.RootElement);
        Assert.Equal(dim, config.RotaryDim);
        var rope = config.Rope;

        var expected = c.GetProperty("inv_freq").EnumerateArray().Select(e => (float)ParseHex(e.GetString()!)).ToArray();
        Assert.Equal(dim / 2, expected.Length);
        // The scaling's arithmetic, from torch's unscaled frequencies: bit for bit.
        var unscaled = c.GetProperty("default_inv_freq").EnumerateArray().Select(e => (float)ParseHex(e.GetString()!)).ToArray();
        var wrong = Enumerable.Range(0, expected.Length).Where(i => rope.Scale(unscaled[i]) != expected[i]).ToList();
        Assert.True(wrong.Count == 0, $"{name}: {wrong.Count} of {expected.Length} scaled inverse frequencies differ from torch's, first at pair {wrong.FirstOrDefault()}: " +
            (wrong.Count > 0 ? $"{rope.Scale(unscaled[wrong[0]]):R} vs {expected[wrong[0]]:R}" : ""));
        // The unscaled ones are theta^(-2i/d) through a libm pow, which torch (Debian's 1.13 here) and .NET's MathF.Pow
        // round differently by a few ulps for some i; the whole chain stays within that.
        var far = Enumerable.Range(0, expected.Length).Where(i => Ulps(rope.InverseFrequency(i, dim), expected[i]) > 8).ToList();
        Assert.True(far.Count == 0, $"{name}: {far.Count} inverse frequencies are more than 8 ulps from torch's, first at pair {far.FirstOrDefault()}");

        var positions = c.GetProperty("positions").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var angles = c.GetProperty("angles").EnumerateArray().ToArray();
        for (int p = 0; p < positions.Length; p++)
        {
            var row = angles[p].EnumerateArray().Select(e => (float)ParseHex(e.GetString()!)).ToArray();
            for (int i = 0; i < dim / 2; i++)
            {
                // the angle is one float32 product: exact wherever the frequency is
                float angle = positions[p] * rope.InverseFrequency(i, dim);
                float torchAngle = positions[p] * expected[i];
                Assert.True(torchAngle == row[i], $"{name}: torch's angle at position {positions[p]}, pair {i} is not pos · inv_freq in float32");
                Assert.True(Ulps(angle, row[i]) <= 9, $"{name}: angle at position {positions[p]}, pair {i}: {angle:R} vs torch {row[i]:R}");
                var (cos, sin) = RopeTable.At(positions[p], i, dim, rope);
                Assert.Equal((float)Math.Cos(angle), (float)cos);
                Assert.Equal((float)Math.Sin(angle), (float)sin);
            }
        }
    }

    /// <summary>The scaling reaches the forward: the same weights with and without it give the same logits at position 0 (angle 0) and different ones after.</summary>
    [Fact]
    public void The_forward_rotates_by_the_scaled_frequencies()
    {
        var scaled = Palimpsest.Tests.Runtime.SmallConfigs.Get("llama3-scaled");
        var plain = scaled with { RopeScaling = null };
        Assert.NotEqual(plain.Rope.InverseFrequency(1, 6), scaled.Rope.InverseFrequency(1, 6));
        Assert.NotEqual(plain.Rope.InverseFrequency(2, 6), scaled.Rope.InverseFrequency(2, 6));
        Assert.Equal(plain.Rope.InverseFrequency(0, 6), scaled.Rope.InverseFrequency(0, 6));
        var weights = Palimpsest.Models.RandomWeights.Create(scaled, 5, 0.4);
        int[] ids = [3, 17, 8, 30, 1, 12, 25];
        double[] Logits(ModelConfig c)
        {
            using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
            using var model = Palimpsest.Runtime.Model.FromHost(c, weights, b);
            using var tf = new Palimpsest.Runtime.Transformer(model);
            using var r = tf.Forward(ids);
            var h = new double[r.Logits.Length];
            b.ToHost(r.Logits, h);
            return h;
        }
        double[] a = Logits(plain), s = Logits(scaled);
        int v = scaled.Vocab;
        Assert.Equal(a.AsSpan(0, v).ToArray(), s.AsSpan(0, v).ToArray());
        for (int t = 1; t < ids.Length; t++)
            Assert.True(Enumerable.Range(t * v, v).Max(i => Math.Abs(a[i] - s[i])) > 1e-9, $"position {t}: the scaling changed nothing");
    }

    private static int Ulps(float a, float b) => Math.Abs(BitConverter.SingleToInt32Bits(a) - BitConverter.SingleToInt32Bits(b));

    [Fact]
    public void Llama3_scaling_changes_only_the_long_wavelengths()
    {
        var plain = new RopeFrequencies(500000);
        var scaled = new RopeFrequencies(500000, new RopeScaling(RopeScaling.Llama3Type, 8, 1, 4, 8192));
        // the first pairs (short wavelengths) are as trained; the last (longest) divided by the factor
        Assert.Equal(plain.InverseFrequency(0, 128), scaled.InverseFrequency(0, 128));
        Assert.Equal(plain.InverseFrequency(63, 128) / 8f, scaled.InverseFrequency(63, 128));
        Assert.NotEqual(plain.InverseFrequency(63, 128), scaled.InverseFrequency(63, 128));
    }
}
