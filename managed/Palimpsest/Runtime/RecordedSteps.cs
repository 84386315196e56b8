using Palimpsest.Backends;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>
/// Pass i's share of a step's loss, from its logits [R, V]: writes the loss's gradient into dl
/// [R, V] (zero on entry). The caller keeps the loss values.
/// </summary>
public delegate void PassLoss(int pass, Tensor logits, Tensor dl);

/// <summary>
/// The forward and backward passes of an optimisation step over fixed inputs: the same ids and
/// options at every step, only the values the interventions read change, and every intervention's
/// gradient accumulates into one tensor grad [d] (a vector added at several places). Each step
/// runs, per pass: forward, loss (<see cref="PassLoss"/>), backward.
/// On a backend that records device work (<see cref="IGraphCapture"/>, CUDA graphs) with replay on,
/// the first step runs op by op (it fills the buffer cache a recording draws from), the second
/// records each pass's forward and backward, and every step from then on replays them: the same
/// work without the host queueing every op of every step. The recorded forward's result (logits and
/// tape) and dl are fixed buffers that every replay rewrites; the loss between the two replays runs
/// op by op (it reads values back to the host). Elsewhere every step runs op by op.
/// </summary>
public sealed class RecordedSteps : IDisposable
{
    private readonly Transformer _tf;
    private readonly IReadOnlyList<(int[] Ids, ForwardOptions Options)> _passes;
    private readonly Tensor _grad;
    private readonly IGraphCapture? _cap;
    private readonly List<(ForwardResult Result, Tensor Dl, IReplayable Forward, IReplayable Backward)> _recorded = [];
    private int _steps;

    /// <summary>passes: ids [T_i] and options (KeepForBackward) of each pass; grad [d]: the same tensor at every step (recordings write into it).</summary>
    public RecordedSteps(Transformer tf, IReadOnlyList<(int[] Ids, ForwardOptions Options)> passes, Tensor grad, bool replay)
    {
        _tf = tf; _passes = passes; _grad = grad;
        _cap = replay ? tf.Model.Backend as IGraphCapture : null;
    }

    /// <summary>One step: per pass, forward, loss, backward (grad accumulates; the caller zeroes it between steps).</summary>
    public void Step(PassLoss loss)
    {
        if (_cap is null || _steps++ == 0)
        {
            RunOnce(_tf, _passes, _grad, loss);
            return;
        }
        var b = _tf.Model.Backend;
        _cap.Settle(_grad); // its zero-fill must happen before a replay accumulates into it
        if (_recorded.Count == 0) Record(_cap);
        for (int i = 0; i < _passes.Count; i++)
        {
            var (r, dl, forward, backward) = _recorded[i];
            forward.Launch();
            b.Zero(dl);
            _cap.Settle(dl);
            loss(i, r.Logits, dl);
            backward.Launch();
        }
    }

    /// <summary>One step op by op: per pass, forward, loss, backward; grad [d] accumulates every intervention's gradient.</summary>
    public static void RunOnce(Transformer tf, IReadOnlyList<(int[] Ids, ForwardOptions Options)> passes, Tensor grad, PassLoss loss)
    {
        var b = tf.Model.Backend;
        for (int i = 0; i < passes.Count; i++)
        {
            var (ids, options) = passes[i];
            using var r = tf.Forward(ids, options);
            using var dl = b.Zeros(r.Logits.Shape);
            loss(i, r.Logits, dl);
            tf.Backward(r, dl, Grads(options, grad));
        }
    }

    // One gradient per intervention, all the same tensor.
    private static Tensor[] Grads(ForwardOptions options, Tensor grad) => Enumerable.Repeat(grad, options.Interventions?.Count ?? 0).ToArray();

    private void Record(IGraphCapture cap)
    {
        var b = _tf.Model.Backend;
        for (int i = 0; i < _passes.Count; i++)
        {
            var (ids, options) = _passes[i];
            if (i > 0)
            {
                // The recordings so far keep their buffers, which the op-by-op step 0 had
                // returned before this pass ran: run it once more so that the cache holds
                // everything its recording will draw (into a throwaway gradient).
                using var scratchGrad = b.Zeros(_grad.Shape);
                using (var warm = _tf.Forward(ids, options))
                using (var wdl = b.Zeros(warm.Logits.Shape))
                    _tf.Backward(warm, wdl, Grads(options, scratchGrad));
            }
            ForwardResult? r = null;
            Tensor? dl = null;
            IReplayable? forward = null;
            try
            {
                forward = cap.Record(() => r = _tf.Forward(ids, options));
                dl = b.Zeros(r!.Logits.Shape);
                cap.Settle(dl);
                // The forward's recording now holds the temporaries it drew from the cache,
                // which step 0's backward had reused (float16 weights: the activations' narrow
                // copies): one backward op by op over the recorded (not yet run) tensors, into a
                // throwaway gradient, puts the ones the backward's recording needs back.
                using (var scratchGrad = b.Zeros(_grad.Shape))
                    _tf.Backward(r, dl, Grads(options, scratchGrad));
                var grads = Grads(options, _grad);
                var backward = cap.Record(() => _tf.Backward(r, dl, grads));
                _recorded.Add((r, dl, forward, backward));
            }
            catch
            {
                forward?.Dispose(); r?.Dispose(); dl?.Dispose();
                throw;
            }
        }
    }

    public void Dispose()
    {
        // the recordings first: they write into the forward's tensors until released
        foreach (var (r, dl, forward, backward) in _recorded)
        {
            backward.Dispose(); forward.Dispose(); r.Dispose(); dl.Dispose();
        }
        _recorded.Clear();
    }
}
