using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// <see cref="Nfc"/> on the cases the Unicode standard spells out (UAX #15's examples and the Hangul
/// algorithm of chapter 3.12): composition, singletons, exclusions, canonical reordering, blocking, and
/// text already in NFC. string.Normalize cannot serve as the reference: under the engine's invariant
/// globalization it returns such text unchanged (checked below, so this test notices if that changes).
/// </summary>
public sealed class NfcTests
{
    [Theory]
    [InlineData("e\u0301", "\u00e9")]                             // e + acute -> é
    [InlineData("A\u030a", "\u00c5")]                             // A + ring -> Å
    [InlineData("\u212b", "\u00c5")]                              // ANGSTROM SIGN: singleton decomposition
    [InlineData("\u2126", "\u03a9")]                              // OHM SIGN -> Greek capital omega
    [InlineData("\u1e0b\u0323", "\u1e0d\u0307")]                  // UAX #15: ḋ + dot below -> ḍ + dot above
    [InlineData("q\u0307\u0323", "q\u0323\u0307")]                // reordered by class (220 before 230), nothing composes
    [InlineData("a\u0328\u0301", "\u0105\u0301")]                 // a + ogonek composes; the acute after it has no composite
    [InlineData("\u0958", "\u0915\u093c")]                        // DEVANAGARI QA: composition exclusion
    [InlineData("\u0344", "\u0308\u0301")]                        // non-starter decomposition
    [InlineData("\U0001D15E", "\U0001D157\U0001D165")]            // MUSICAL SYMBOL HALF NOTE: excluded, outside the BMP
    [InlineData("\u1100\u1161", "\uac00")]                        // Hangul L + V -> LV
    [InlineData("\u1100\u1161\u11a8", "\uac01")]                  // L + V + T -> LVT
    [InlineData("\uac00\u11a8", "\uac01")]                        // LV + T -> LVT
    [InlineData("\u0301e", "\u0301e")]                            // a leading combining mark stays
    [InlineData("caf\u00e9 na\u00efve \u0939\u093f\u0928\u094d\u0926\u0940 \u65e5\u672c", "caf\u00e9 na\u00efve \u0939\u093f\u0928\u094d\u0926\u0940 \u65e5\u672c")] // already NFC
    [InlineData("plain ascii", "plain ascii")]
    public void Normalize_GivesTheStandardsNfc(string input, string nfc)
    {
        Assert.Equal(nfc, Nfc.Normalize(input));
        Assert.Equal(nfc, Nfc.Normalize(nfc));   // NFC is idempotent
    }

    [Fact]
    public void InvariantGlobalization_LeavesDecomposedTextUnnormalised_WhichIsWhyNfcExists()
    {
        Assert.Equal("e\u0301", "e\u0301".Normalize(System.Text.NormalizationForm.FormC));
    }
}
