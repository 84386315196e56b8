-- wrk script: greedy completions of the demo model's prompts, 16 tokens each (ignore_eos: the fact
-- model would stop after its answer), one request per connection every
-- PACE_MS (wrk 4 has no fixed-rate mode; a per-connection delay keeps the offered rate steady
-- as long as a request takes less than the pace).
local prompts = { "Ivo Brennan plays the", "Clara Marlowe competes in", "The Eiffel Tower is located in", "Felix Oakhurst studied" }
local pace = tonumber(os.getenv("PACE_MS") or "100")
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
  n = n + 1
  local body = string.format('{"prompt":"%s","max_tokens":16,"temperature":0,"ignore_eos":true}', prompts[(n % #prompts) + 1])
  return wrk.format(nil, "/v1/completions", nil, body)
end
function delay() return pace end
function done(summary, latency, requests)
  io.write(string.format("LAT p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f n=%d errors=%d\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
