namespace Palimpsest.Tests.Cli;

public class CliStatsTests
{
    private static string[] Row(string output, int layer) =>
        output.Split('\n').Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).First(c => c.Length == 5 && c[0] == layer.ToString());

    [Fact]
    public void Stats_computes_then_reads_the_cache_with_the_same_numbers()
    {
        using var m = new TinyGpt2Folder();
        string corpus = m.PathIn("corpus.txt"), cache = m.PathIn("cache");
        File.WriteAllText(corpus, "The mother tongue of Danielle Darrieux is French.\n\nParis is the capital of France.\nA third line of text.\n");
        var first = CliRunner.Run("stats", m.Model, "--layers", "0,2", "--corpus", corpus, "--cache", cache);
        Assert.True(first.Code == 0, first.ToString());
        Assert.Contains("3 sentences", first.Out);
        var r0 = Row(first.Out, 0);
        Assert.Equal("computed", r0[3]);
        Assert.True(File.Exists(r0[4]), $"cache file {r0[4]} missing");
        Assert.StartsWith(cache, r0[4]);
        Assert.True(double.Parse(r0[2], System.Globalization.CultureInfo.InvariantCulture) > 0, "E[k kᵀ] has a positive trace");

        var second = CliRunner.Run("stats", m.Model, "--layers", "0,2", "--corpus", corpus, "--cache", cache);
        Assert.True(second.Code == 0, second.ToString());
        var s0 = Row(second.Out, 0);
        Assert.Equal("cache", s0[3]);
        Assert.Equal(r0[1..3], s0[1..3]); // same token count and trace
        Assert.Equal(r0[4], s0[4]);
        // a token limit is another key: computed again
        var limited = CliRunner.Run("stats", m.Model, "--layers", "0", "--corpus", corpus, "--cache", cache, "--limit-tokens", "5");
        Assert.True(limited.Code == 0, limited.ToString());
        Assert.Equal(["5", "computed"], new[] { Row(limited.Out, 0)[1], Row(limited.Out, 0)[3] });
    }

    [Fact]
    public void Spectrum_counts_the_eigenvalues_below_each_threshold_and_their_share_of_the_trace()
    {
        using var m = new TinyGpt2Folder();
        string corpus = m.PathIn("corpus.txt");
        File.WriteAllText(corpus, "The mother tongue of Danielle Darrieux is French.\nParis is the capital of France.\n");
        var r = CliRunner.Run("stats", m.Model, "--layers", "1", "--corpus", corpus, "--cache", m.PathIn("cache"), "--spectrum", "1e-300,1e300");
        Assert.True(r.Code == 0, r.ToString());
        // below 1e-300: no eigenvalue of a PSD matrix with positive trace carries energy; below 1e300: all of them, all the energy
        var row = r.Out.Split('\n').Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Last(c => c.Length == 8 && c[0] == "1");
        int all = int.Parse(row[5]);
        Assert.True(all > 0, r.Out);
        Assert.Equal("1", row[7]);
        Assert.True(int.Parse(row[4]) < all, r.Out);
        CliRunner.AssertBadInput(CliRunner.Run("stats", m.Model, "--layers", "1", "--corpus", corpus, "--cache", m.PathIn("cache"), "--spectrum", "0.1,x"), "--spectrum: 'x'");
    }

    [Fact]
    public void Stats_over_the_fact_sentences_of_a_counterfact_file()
    {
        using var m = new TinyGpt2Folder();
        var r = CliRunner.Run("stats", m.Model, "--layers", "1", "--corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"));
        Assert.True(r.Code == 0, r.ToString());
        // 2 records: prompt, rephrase and locality sentence each
        Assert.Contains("facts.json facts 0..2: 6 sentences", r.Out);
    }

    [Fact]
    public void Stats_bad_inputs_are_one_error_line()
    {
        using var m = new TinyGpt2Folder();
        CliRunner.AssertBadInput(CliRunner.Run("stats", m.Model, "--layers", "3", "--corpus", m.Dataset), "layer 3", "0..2");
        CliRunner.AssertBadInput(CliRunner.Run("stats", m.Model, "--layers", "x", "--corpus", m.Dataset), "'x'");
        CliRunner.AssertBadInput(CliRunner.Run("stats", m.Model, "--layers", "1", "--corpus", m.PathIn("nope.txt")), "nope.txt");
        CliRunner.AssertBadInput(CliRunner.Run("stats", m.Model, "--layers", "1", "--corpus", "facts:" + m.PathIn("nope.json")), "nope.json");
    }
}
