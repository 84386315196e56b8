using Palimpsest.Hosting;
using Prometheus;

namespace Palimpsest.Cli.Serve;

/// <summary>
/// The server's Prometheus metrics, in a registry of its own (no process-wide state): request
/// latency, tokens and the gap between a stream's tokens, queue depth, edits and their phases,
/// the current and live weights versions, and the runtime's collection counts.
/// </summary>
internal sealed class ServeMetrics
{
    public ServeMetrics(LiveModel live)
    {
        Registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(Registry);
        DotNetStats.Register(Registry);
        var ms = Histogram.ExponentialBuckets(0.0005, 2, 18); // 0.5 ms .. ~65 s
        Requests = f.CreateHistogram("palimpsest_request_duration_seconds", "HTTP request latency", new HistogramConfiguration { LabelNames = ["endpoint", "status"], Buckets = ms });
        Tokens = f.CreateCounter("palimpsest_tokens_generated_total", "completion tokens generated (rate: tokens/s)");
        TokenGap = f.CreateHistogram("palimpsest_inter_token_seconds", "time between two tokens of one completion (first: since its prefill began)",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.00025, 1.5, 24) });
        CompletionPhase = f.CreateHistogram("palimpsest_completion_phase_seconds", "where a completion's time goes: queue (tokenize, wait for a stream), handoff (onto the stream's thread), decode, resume (back to the request)",
            new HistogramConfiguration { LabelNames = ["phase"], Buckets = Histogram.ExponentialBuckets(0.000016, 2, 20) });
        Edits = f.CreateCounter("palimpsest_edits_applied_total", "edits applied and acknowledged");
        Reverts = f.CreateCounter("palimpsest_edits_reverted_total", "edits reverted");
        EditPhase = f.CreateHistogram("palimpsest_edit_phase_seconds", "time of an edit's or revert's phases: compute (off the request path), commit (journal + checkpoint), upload (new matrices), publish (the swap), held (waiting for completions to finish decoding, --edit-priority idle)",
            new HistogramConfiguration { LabelNames = ["phase"], Buckets = Histogram.ExponentialBuckets(0.000001, 4, 16) });
        var queue = f.CreateGauge("palimpsest_queue_depth", "completions waiting for a decoding stream");
        var version = f.CreateGauge("palimpsest_weights_version", "the current weights version (journal generation)");
        var live_ = f.CreateGauge("palimpsest_live_versions", "weights versions not yet freed (current + retired ones still pinned)");
        // the time the runtime stopped every thread for collections: what the GC costs the streams, which counts do not say
        var gcPause = f.CreateCounter("palimpsest_gc_pause_seconds_total", "time the garbage collector paused the process (all threads)");
        Registry.AddBeforeCollectCallback(() =>
        {
            gcPause.IncTo(GC.GetTotalPauseDuration().TotalSeconds);
            queue.Set(live.QueueDepth);
            version.Set(live.Version);
            live_.Set(live.Weights.LiveVersions);
        });
    }

    public CollectorRegistry Registry { get; }
    public Histogram Requests { get; }
    public Counter Tokens { get; }
    public Histogram TokenGap { get; }
    public Histogram CompletionPhase { get; }
    public Counter Edits { get; }
    public Counter Reverts { get; }
    public Histogram EditPhase { get; }

    public void Record(CompletionTimings? t)
    {
        if (t is null) return;
        CompletionPhase.WithLabels("queue").Observe(t.QueueMs / 1000);
        CompletionPhase.WithLabels("handoff").Observe(t.HandoffMs / 1000);
        CompletionPhase.WithLabels("decode").Observe(t.DecodeMs / 1000);
        CompletionPhase.WithLabels("resume").Observe(t.ResumeMs / 1000);
    }

    public void Record(EditTimings t)
    {
        EditPhase.WithLabels("compute").Observe(t.ComputeMs / 1000);
        EditPhase.WithLabels("commit").Observe(t.CommitMs / 1000);
        EditPhase.WithLabels("upload").Observe(t.UploadMs / 1000);
        EditPhase.WithLabels("publish").Observe(t.PublishMs / 1000);
        EditPhase.WithLabels("held").Observe(t.HeldMs / 1000);
    }
}
