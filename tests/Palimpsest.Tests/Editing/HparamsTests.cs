using Palimpsest.Editing;

namespace Palimpsest.Tests.Editing;

public class HparamsTests
{
    [Fact]
    public void A_partial_file_changes_only_its_fields()
    {
        var r = RomeHparams.FromJson("{\"layers\": [3], \"v_lr\": 0.1}");
        Assert.Equal([3], r.Layers);
        Assert.Equal(0.1, r.VLr);
        Assert.Equal(20, r.VNumGradSteps);
        var m = MemitHparams.FromJson("{\"mom2_update_weight\": 15000}");
        Assert.Equal(15000, m.Mom2UpdateWeight);
        Assert.Equal(MemitHparams.Gpt2Xl.Layers, m.Layers);
        var a = AlphaEditHparams.FromJson("{\"L2\": 3}");
        Assert.Equal(3, a.L2);
        Assert.Equal(0.02, a.NullspaceThreshold);
    }

    [Fact]
    public void Round_trips_and_refuses_unknown_fields_and_bad_json()
    {
        var r = RomeHparams.GptJ6B;
        Assert.Equal(r.ToJson(), RomeHparams.FromJson(r.ToJson()).ToJson());
        var e = Assert.Throws<ArgumentException>(() => RomeHparams.FromJson("{\"v_lrr\": 0.1}", "rome.json"));
        Assert.Contains("'v_lrr'", e.Message); Assert.Contains("rome.json", e.Message);
        Assert.Throws<ArgumentException>(() => MemitHparams.FromJson("[1, 2]"));
        Assert.Throws<ArgumentException>(() => AlphaEditHparams.FromJson("{\"L2\": \"ten\"}"));
        Assert.Throws<ArgumentException>(() => RomeHparams.FromJson("{ not json"));
    }

    [Theory]
    [InlineData("""{"v_lr": "abc"}""", "field 'v_lr' must be a number (got \"abc\")")]
    [InlineData("""{"v_num_grad_steps": 2.5}""", "field 'v_num_grad_steps' must be a whole number (got 2.5)")]
    [InlineData("""{"layers": "0"}""", "field 'layers' must be a list of whole numbers (got \"0\")")]
    [InlineData("""{"mom2_adjustment": 1}""", "field 'mom2_adjustment' must be true or false (got 1)")]
    [InlineData("""{"context_template_length_params": [5, 5]}""", "field 'context_template_length_params' must be a list of lists of whole numbers (got [5,5])")]
    public void A_value_of_the_wrong_kind_is_named_in_words_not_dotnet_types(string json, string expected)
    {
        var e = Assert.Throws<ArgumentException>(() => RomeHparams.FromJson(json, "rome.json"));
        Assert.Equal($"rome.json: {expected}", e.Message);
        Assert.DoesNotContain("System.", e.Message);
        Assert.DoesNotContain("Palimpsest.", e.Message);
        Assert.Contains("'steps' must be a whole number", Assert.Throws<ArgumentException>(() => LemoeHparams.FromJson("""{"steps": "many"}""")).Message);
        Assert.Contains("'lr' must be a number", Assert.Throws<ArgumentException>(() => UltraEditHparams.FromJson("""{"layers": [1], "lr": [1]}""")).Message);
    }
}
