using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

public sealed class SubjectTokensTests
{
    internal static ITextTokenizer Gpt2() =>
        TokenizerFactory.Gpt2(ModelConfig.Load(Path.Combine(Paths.Fixture("gpt2"), "config.json")) with { Vocab = TokenizerFactory.Gpt2VocabSize });

    [Fact]
    public void Darrieux_SubjectTokensAreDanielleDarRieUx()
    {
        var tok = Gpt2();
        var pos = SubjectTokens.Locate(tok, "The mother tongue of {} is", "Danielle Darrieux");
        // The, mother, tongue, of, ĠDanielle, ĠDar, rie, ux, is
        Assert.Equal([464, 2802, 11880, 286, 39808, 7491, 5034, 2821, 318], pos.Ids);
        Assert.Equal(7, pos.Index);
        Assert.Equal("ux", tok.Decode([pos.Ids[pos.Index]]));
        Assert.Equal(4, SubjectTokens.Index(tok, "The mother tongue of {} is", "Danielle Darrieux", SubjectToken.First));
        Assert.Equal(8, SubjectTokens.Index(tok, "The mother tongue of {} is", "Danielle Darrieux", SubjectToken.FirstAfterLast));
        // ROME strips the subject before adding the prefix's space: the same index with stray spaces.
        Assert.Equal(7, SubjectTokens.Index(tok, "The mother tongue of {} is", " Danielle Darrieux "));
    }

    [Fact]
    public void SubjectAtStart_HasNoLeadingSpaceAndEndsBeforeTheSuffix()
    {
        var tok = Gpt2();
        var pos = SubjectTokens.Locate(tok, "{} is a native speaker of", "Danielle Darrieux");
        Assert.Equal(tok.Encode("Danielle Darrieux").Length - 1, pos.Index);
        Assert.Equal("Danielle Darrieux", tok.Decode(pos.Ids.AsSpan(0, pos.Index + 1)));
        Assert.Equal(" is", tok.Decode(pos.Ids.AsSpan(pos.Index + 1, 1)));
        Assert.Equal(0, SubjectTokens.Index(tok, "{} is a native speaker of", "Danielle Darrieux", SubjectToken.First));
    }

    [Fact]
    public void TextAfterTheSubject_AndSubjectAtTheEnd()
    {
        var tok = Gpt2();
        // "Where Danielle Darrieux is from, people speak the language of": suffix of many tokens.
        var pos = SubjectTokens.Locate(tok, "Where {} is from, people speak the language of", "Danielle Darrieux");
        Assert.Equal("Where Danielle Darrieux", tok.Decode(pos.Ids.AsSpan(0, pos.Index + 1)));
        Assert.Equal(pos.Index + 1, SubjectTokens.Index(tok, "Where {} is from, people speak the language of", "Danielle Darrieux", SubjectToken.FirstAfterLast));
        // Nothing after the subject: "first after last" falls back to the last token, as ROME does.
        int last = SubjectTokens.Index(tok, "The capital of France is {}", "Paris");
        Assert.Equal(last, SubjectTokens.Index(tok, "The capital of France is {}", "Paris", SubjectToken.FirstAfterLast));
        Assert.Equal(tok.Encode("The capital of France is Paris").Length - 1, last);
    }

    [Fact]
    public void BadTemplates_AreArgumentErrors()
    {
        var tok = Gpt2();
        Assert.Contains("end with a space", Assert.Throws<ArgumentException>(() => SubjectTokens.Index(tok, "Hello,{} is", "X")).Message);
        Assert.Contains("exactly one", Assert.Throws<ArgumentException>(() => SubjectTokens.Index(tok, "{} and {}", "X")).Message);
        Assert.Contains("exactly one", Assert.Throws<ArgumentException>(() => SubjectTokens.Index(tok, "no field", "X")).Message);
    }
}
