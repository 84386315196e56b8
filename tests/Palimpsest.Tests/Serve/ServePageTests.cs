using Xunit;

namespace Palimpsest.Tests.Serve;

/// <summary>
/// The page at `/` in headless Chromium, as a person uses it: ask, apply an edit with the form,
/// see the answer change and the journal row appear, revert it from its button, see the old answer.
/// Then the forecast lists the facts most at risk. The screenshot after the edit is written to the test output folder (serve-page.png).
/// </summary>
public class ServePageTests
{
    private const string Describe = "document.getElementById('status').textContent + ' | ' + document.getElementById('journal').innerText + ' | ' + document.getElementById('completion').textContent";

    [Fact]
    public async Task The_page_applies_shows_and_reverts_an_edit()
    {
        if (!HeadlessChromium.Installed) Assert.Skip($"{HeadlessChromium.Binary} not installed (apt-get install chromium; .ci/run installs it)");
        var cancel = TestContext.Current.CancellationToken;
        await using var f = await ServeFixture.StartAsync();
        await using var browser = await HeadlessChromium.StartAsync(cancel);
        await browser.Navigate(f.Url + "/", cancel);
        await browser.WaitFor("document.getElementById('version') && document.getElementById('version').textContent === '0'", Describe, TimeSpan.FromSeconds(20), cancel);

        async Task<string> Ask(string expectVersion)
        {
            await browser.Eval("document.getElementById('prompt').value = 'Ivo Brennan plays the'; document.getElementById('complete').click()", cancel);
            await browser.WaitFor($"document.getElementById('status').textContent === 'answered on version {expectVersion}'", Describe, TimeSpan.FromSeconds(30), cancel);
            return (await browser.Eval("document.getElementById('completion').textContent", cancel)).GetString()!;
        }
        string before = await Ask("0");
        Assert.StartsWith("Ivo Brennan plays the harp", before);

        await browser.Eval("""
            document.getElementById('token').value = 'test-token-0123456789abcdef';
            document.getElementById('subject').value = 'Ivo Brennan';
            document.getElementById('edit-prompt').value = '{} plays the';
            document.getElementById('target').value = 'flute';
            document.getElementById('apply').click()
            """, cancel);
        await browser.WaitFor("document.querySelectorAll('#journal tr').length === 1", Describe, TimeSpan.FromSeconds(120), cancel);
        Assert.Equal("1", (await browser.Eval("document.getElementById('version').textContent", cancel)).GetString());
        string row = (await browser.Eval("document.querySelector('#journal tr').innerText", cancel)).GetString()!;
        Assert.Contains("Ivo Brennan", row);
        Assert.Contains("flute", row);
        Assert.Contains("active", row);
        Assert.Contains("\"harp\" → \"flute\"", (await browser.Eval("document.getElementById('status').textContent", cancel)).GetString()!.Replace(" harp", "harp").Replace(" flute", "flute"));
        Assert.StartsWith("Ivo Brennan plays the flute", await Ask("1"));
        await File.WriteAllBytesAsync(Path.Combine(AppContext.BaseDirectory, "serve-page.png"), await browser.Screenshot(cancel), cancel);

        await browser.Eval("document.querySelector('#journal button.revert').click()", cancel);
        await browser.WaitFor("document.querySelector('#journal tr.reverted') !== null", Describe, TimeSpan.FromSeconds(60), cancel);
        Assert.Equal("2", (await browser.Eval("document.getElementById('version').textContent", cancel)).GetString());
        Assert.Equal(0, (await browser.Eval("document.querySelectorAll('#journal button.revert').length", cancel)).GetInt32());
        Assert.Equal(before, await Ask("2"));
        Assert.True(f.Live.Journal().Single().Reverted);

        // the forecast lists the facts most at risk and applies nothing
        await browser.Eval("document.getElementById('forecast').click()", cancel);
        await browser.WaitFor("document.querySelectorAll('#risk-list li').length === 5", Describe, TimeSpan.FromSeconds(60), cancel);
        string risk = (await browser.Eval("document.getElementById('risk-list').innerText", cancel)).GetString()!;
        Assert.Contains("drift", risk);
        Assert.DoesNotContain("Ivo Brennan: {} plays the (", risk); // the edited fact itself is not "another fact at risk"
        Assert.Equal("2", (await browser.Eval("document.getElementById('version').textContent", cancel)).GetString());
        Assert.Single(f.Live.Journal());
    }
}
