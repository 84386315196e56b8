// Palimpsest embedded from its NuGet packages: serve the committed demo model, rewrite one of its facts
// with ROME, check the new answer, revert, check the old one is back, and answer through IChatClient.
// Usage: dotnet run -- [model folder]   (default: data/models/facts-d128-l5). Exit code 0: every check passed.
using Microsoft.Extensions.AI;
using Palimpsest.Editing.Data;
using Palimpsest.Hosting;
using Palimpsest.Journal;

string source = args.Length > 0 ? args[0] : "data/models/facts-d128-l5";
string work = Directory.CreateTempSubdirectory("palimpsest-host-").FullName;
int failed = 0;
void Check(bool ok, string what) { Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}"); failed += ok ? 0 : 1; }
try
{
    // a journaled copy of the model: edits are written there (never to the source) and can be reverted bit-exactly
    string dir = Path.Combine(work, Path.GetFileName(Path.TrimEndingDirectorySeparator(source)));
    EditedModel.Create(source, dir).Dispose();
    using var live = LiveModel.Open(dir, new LiveModelOptions { KeyStatsCache = Path.Combine(work, "keystats") });

    string Answer(string prompt) => live.Complete(new CompletionRequest { Prompt = prompt, MaxTokens = 3, Temperature = 0 }).Text;
    foreach (string prompt in new[] { "Ivo Brennan plays the", "Clara Marlowe competes in" })
        Console.WriteLine($"{prompt} ->{Answer(prompt)}");

    var fact = DatasetReader.Load(Path.Combine(source, "requests.json"), limit: 1)[0];
    string before = Answer(fact.FilledPrompt);
    var edit = live.Edit([fact], "rome");                       // hyper-parameters: the folder's rome.json, statistics: its corpus.txt
    var t = edit.Timings;
    Console.WriteLine($"edit {edit.Id} ({fact.Subject} -> {fact.TargetNew}):{edit.Before[0]} =>{edit.After[0]}");
    Console.WriteLine($"  compute {t.ComputeMs:F0} ms, commit {t.CommitMs:F0} ms, upload {t.UploadMs:F0} ms, publish {t.PublishMs:F2} ms");
    string after = Answer(fact.FilledPrompt);
    Check(after.TrimStart().StartsWith(fact.TargetNew, StringComparison.Ordinal), $"after the edit: {fact.FilledPrompt} ->{after}");

    live.Revert(edit.Id);
    string reverted = Answer(fact.FilledPrompt);
    Check(reverted == before, $"after the revert: {fact.FilledPrompt} ->{reverted}");

    // the same model as a Microsoft.Extensions.AI chat client
    using IChatClient chat = new LiveChatClient(live);
    var reply = await chat.GetResponseAsync("Clara Marlowe competes in", new ChatOptions { Temperature = 0, MaxOutputTokens = 3 });
    Check(reply.Text == Answer("Clara Marlowe competes in"), $"IChatClient ({reply.ModelId}): Clara Marlowe competes in ->{reply.Text}");
}
finally
{
    Directory.Delete(work, recursive: true);
}
return failed == 0 ? 0 : 1;
