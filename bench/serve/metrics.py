#!/usr/bin/env python3
"""Differences of two /metrics scrapes: tokens, gen-0 collections, the inter-token gap's p50/p99/largest bucket, edits and publish times."""
import re, sys

def read(path):
    m = {}
    for line in open(path):
        if line.startswith('#') or not line.strip(): continue
        k, v = line.rsplit(' ', 1)
        m[k] = float(v)
    return m

a, b = read(sys.argv[1]), read(sys.argv[2])
d = lambda k: b.get(k, 0) - a.get(k, 0)
tokens = d('palimpsest_tokens_generated_total')
gen0 = d('dotnet_collection_count_total{generation="0"}')
def quantiles(name, label=''):
    keys = [k for k in b if k.startswith(name + '_bucket{') and label in k]
    buckets = sorted(((float(re.search(r'le="([^"]+)"', k).group(1)), d(k)) for k in keys), key=lambda x: x[0])
    total = buckets[-1][1] if buckets else 0
    out = {q: next((le for le, c in buckets if c >= q * total), float('inf')) for q in (0.5, 0.99, 0.999)}
    largest = next((le for le, c in buckets if c >= total), float('inf'))
    return total, out, largest

n, q, largest = quantiles('palimpsest_inter_token_seconds')
print(f"tokens {tokens:.0f}; gen-0 collections {gen0:.0f} ({gen0 / max(tokens, 1):.4f} per token); GC pauses {d('palimpsest_gc_pause_seconds_total') * 1000:.1f} ms in all")
print(f"inter-token gap (upper bucket bounds): p50 <= {q[0.5]*1000:.2f} ms, p99 <= {q[0.99]*1000:.2f} ms, p99.9 <= {q[0.999]*1000:.2f} ms, largest <= {largest*1000:.2f} ms over {n:.0f} gaps")
gaps = d('palimpsest_inter_token_seconds_count')
print(f"inter-token gap mean {d('palimpsest_inter_token_seconds_sum') / max(gaps, 1) * 1000:.3f} ms")
for phase in ('queue', 'handoff', 'decode', 'resume'):
    n_, pq_, pl_ = quantiles('palimpsest_completion_phase_seconds', f'phase="{phase}"')
    mean_ = d(f'palimpsest_completion_phase_seconds_sum{{phase="{phase}"}}') / max(n_, 1)
    if n_: print(f"completion {phase}: mean {mean_*1000:.2f} ms, p50 <= {pq_[0.5]*1000:.2f} ms, p99 <= {pq_[0.99]*1000:.2f} ms, largest <= {pl_*1000:.2f} ms")
publish = 'phase="publish"'
pub = d('palimpsest_edit_phase_seconds_count{' + publish + '}')
if pub:
    mean_publish = d('palimpsest_edit_phase_seconds_sum{' + publish + '}') / pub
    computes = d('palimpsest_edit_phase_seconds_count{phase="compute"}')
    mean_compute = d('palimpsest_edit_phase_seconds_sum{phase="compute"}') / max(computes, 1)
    _, pq, pl = quantiles('palimpsest_edit_phase_seconds', publish)
    print(f"edits+reverts published {pub:.0f}: publish mean {mean_publish * 1e6:.0f} us, largest <= {pl * 1e6:.0f} us; compute mean {mean_compute:.2f} s over {computes:.0f} (reverts compute nothing)")
    edits, reverts = d('palimpsest_edits_applied_total'), d('palimpsest_edits_reverted_total')
    held = d('palimpsest_edit_phase_seconds_sum{phase="held"}')
    compute = d('palimpsest_edit_phase_seconds_sum{phase="compute"}')
    if edits: print(f"edits {edits:.0f}, reverts {reverts:.0f}; per edit: compute {compute / edits:.2f} s, of it held while completions decoded {held / edits:.2f} s")
