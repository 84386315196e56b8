namespace Palimpsest.Cli;

/// <summary>Next-token choice from one position's logits.</summary>
internal static class Sampling
{
    /// <summary>
    /// logits [V] -> a token id: argmax when <paramref name="topK"/> is 0, else a draw from the
    /// softmax of logits/temperature restricted to the k largest (ties broken by lower id).
    /// </summary>
    public static int Pick(double[] logits, int topK, double temperature, Random rng)
    {
        if (topK <= 0)
        {
            int best = 0;
            for (int v = 1; v < logits.Length; v++) if (logits[v] > logits[best]) best = v;
            return best;
        }
        var top = Commands.NextToken.Top(logits, Math.Min(topK, logits.Length));
        double max = top[0].Logit, sum = 0;
        var w = new double[top.Length];
        for (int i = 0; i < top.Length; i++) sum += w[i] = Math.Exp((top[i].Logit - max) / temperature);
        double u = rng.NextDouble() * sum;
        for (int i = 0; i < top.Length; i++)
        {
            u -= w[i];
            if (u < 0) return top[i].Id;
        }
        return top[^1].Id;
    }
}
