using System.Net;

namespace Palimpsest.Cli.Serve;

/// <summary>
/// The page at `/`: the journal with a revert button per active edit, a prompt box, the edit form
/// with apply and forecast (the facts most at risk), and the write token (kept in the tab's
/// sessionStorage). Plain HTML and fetch; no framework, nothing loaded from elsewhere.
/// </summary>
internal static class ServePage
{
    public static string Html(string modelId) => Template.Replace("{{model}}", WebUtility.HtmlEncode(modelId), StringComparison.Ordinal);

    private const string Template = """
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>palimpsest · {{model}}</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 920px; color: #1d1d1f; }
 h1 { font-size: 20px; margin: 0 0 4px } h2 { font-size: 16px; margin: 22px 0 8px }
 .muted { color: #6e6e73 } section { border: 1px solid #d2d2d7; border-radius: 8px; padding: 12px 16px; margin: 12px 0 }
 input[type=text], input[type=password] { font: inherit; padding: 5px 8px; border: 1px solid #c7c7cc; border-radius: 6px; width: 100% ; box-sizing: border-box }
 .row { display: grid; grid-template-columns: 1fr 2fr 1fr; gap: 8px } button { font: inherit; padding: 5px 12px; margin-top: 8px; border-radius: 6px; border: 1px solid #0071e3; background: #0071e3; color: white; cursor: pointer }
 button.secondary { background: white; color: #0071e3 } table { border-collapse: collapse; width: 100% } td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e5ea }
 .reverted td { color: #a1a1a6; text-decoration: line-through } #completion { font-family: ui-monospace, monospace; white-space: pre-wrap; min-height: 1.4em }
 #status { min-height: 1.4em } .error { color: #c9302c }
</style></head>
<body>
<h1>palimpsest · <span id="model">{{model}}</span></h1>
<div class="muted">weights version <b id="version">…</b> · a completion keeps the version it started on; an edit is published as a new version</div>
<div id="status" role="status"></div>

<section><h2>Ask</h2>
 <input type="text" id="prompt" value="The Eiffel Tower is located in" aria-label="prompt">
 <button id="complete">Complete</button> <span class="muted">greedy, 8 tokens</span>
 <div id="completion"></div>
</section>

<section><h2>Rewrite a fact</h2>
 <div class="row">
  <input type="text" id="subject" placeholder="subject, e.g. the Eiffel Tower" aria-label="subject">
  <input type="text" id="edit-prompt" placeholder="prompt with {} for the subject, e.g. {} is located in" aria-label="edit prompt">
  <input type="text" id="target" placeholder="new target, e.g. Rome" aria-label="target">
 </div>
 <button id="apply">Apply (ROME)</button> <button id="forecast" class="secondary">Forecast</button>
 <div id="risk"></div>
 <h2>Write token</h2>
 <input type="password" id="token" placeholder="bearer token of this server (kept in this tab only)" aria-label="token">
</section>

<section><h2>Journal</h2>
 <table><thead><tr><th>id</th><th>method</th><th>subject</th><th>target</th><th>layers</th><th>state</th><th></th></tr></thead>
 <tbody id="journal"></tbody></table>
</section>

<script>
const $ = id => document.getElementById(id);
$('token').value = sessionStorage.getItem('palimpsest-token') || '';
$('token').addEventListener('input', () => sessionStorage.setItem('palimpsest-token', $('token').value));
function say(text, error) { $('status').textContent = text; $('status').className = error ? 'error' : ''; }
async function call(method, path, body, write) {
  const headers = { 'Content-Type': 'application/json' };
  if (write) headers['Authorization'] = 'Bearer ' + $('token').value;
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const json = await r.json();
  if (!r.ok) throw new Error(json.error ? json.error.message : r.status);
  return json;
}
function cell(tr, text) { const td = document.createElement('td'); td.textContent = text; tr.appendChild(td); return td; }
async function refresh() {
  const j = await call('GET', '/v1/edits');
  $('version').textContent = j.version;
  const body = $('journal'); body.replaceChildren();
  for (const e of j.data.slice().reverse()) {
    const tr = document.createElement('tr'); tr.dataset.id = e.id; if (e.reverted) tr.className = 'reverted';
    cell(tr, e.id); cell(tr, e.method); cell(tr, e.subject); cell(tr, e.target); cell(tr, e.layers.join(','));
    cell(tr, e.reverted ? 'reverted' : 'active');
    const td = cell(tr, '');
    if (!e.reverted) {
      const b = document.createElement('button'); b.className = 'secondary revert'; b.textContent = 'Revert';
      b.onclick = async () => { try { const r = await call('DELETE', '/v1/edits/' + e.id, null, true); say('edit ' + e.id + ' reverted: version ' + r.version); await refresh(); } catch (x) { say(x.message, true); } };
      td.appendChild(b);
    }
    body.appendChild(tr);
  }
}
function editBody() { return { subject: $('subject').value, prompt: $('edit-prompt').value, target_new: $('target').value, method: 'rome' }; }
$('complete').onclick = async () => {
  try { $('completion').textContent = '…'; const r = await call('POST', '/v1/completions', { prompt: $('prompt').value, max_tokens: 8, temperature: 0 });
        $('completion').textContent = $('prompt').value + r.choices[0].text; say('answered on version ' + r.version); }
  catch (x) { $('completion').textContent = ''; say(x.message, true); }
};
$('apply').onclick = async () => {
  try { say('computing the edit…'); const r = await call('POST', '/v1/edits', editBody(), true);
        say('edit ' + r.id + ' applied: version ' + r.version + '; "' + r.before[0] + '" → "' + r.after[0] + '" (' + Math.round(r.timings_ms.compute) + ' ms)'); await refresh(); }
  catch (x) { say(x.message, true); }
};
$('forecast').onclick = async () => {
  try { say('forecasting…'); const r = await call('POST', '/v1/edits/forecast', editBody(), true);
        const list = document.createElement('ol'); list.id = 'risk-list';
        for (const row of r.data) for (const f of row.most_at_risk) { const li = document.createElement('li'); li.textContent = f.fact + ' (drift ' + f.drift.toFixed(3) + ')'; list.appendChild(li); }
        $('risk').replaceChildren(list); say('forecast: layer ' + r.data.map(x => x.layer).join(',') + ', nothing applied'); }
  catch (x) { say(x.message, true); }
};
refresh().catch(x => say(x.message, true));
</script>
</body></html>
""";
}
