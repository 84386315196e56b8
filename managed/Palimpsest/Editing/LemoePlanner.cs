namespace Palimpsest.Editing;

/// <summary>
/// LEMoE's editing-order planning: requests whose inputs look alike should share a batch (and so
/// an expert), so the stream is clustered and batches are cut within clusters. K-means (k-means++
/// seeding, Lloyd iterations, seeded: the same order every run) over each request's routing input
/// (the mean token embedding of its filled prompt), K = ceil(n / batch); clusters come in the order
/// of their first request, requests keep their order inside a cluster, and every cluster is split
/// into batches of at most `batch` requests (a cluster's last batch is not topped up from the next).
/// </summary>
public static class LemoePlanner
{
    /// <summary>The batches in edit order.</summary>
    public static IReadOnlyList<IReadOnlyList<EditRequest>> Plan(IReadOnlyList<EditRequest> requests, int batch, Func<EditRequest, double[]> embed, int seed = 0)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), "batch must be >= 1");
        if (requests.Count == 0) return [];
        int k = (requests.Count + batch - 1) / batch;
        var x = requests.Select(embed).ToArray();
        var label = KMeans(x, k, seed);
        var batches = new List<IReadOnlyList<EditRequest>>();
        foreach (var cluster in Enumerable.Range(0, requests.Count).GroupBy(i => label[i]).OrderBy(g => g.Min()))
            foreach (var chunk in cluster.OrderBy(i => i).Chunk(batch))
                batches.Add(chunk.Select(i => requests[i]).ToList());
        return batches;
    }

    /// <summary>Cluster labels [n] of points x [n][dim] (k-means++ start, at most 100 Lloyd rounds).</summary>
    public static int[] KMeans(double[][] x, int k, int seed)
    {
        int n = x.Length;
        if (k < 1 || k > n) throw new ArgumentOutOfRangeException(nameof(k), $"k = {k} for {n} points");
        var rng = new Random(seed);
        var centres = new List<double[]> { (double[])x[rng.Next(n)].Clone() };
        var dist = x.Select(p => Dist2(p, centres[0])).ToArray();
        while (centres.Count < k)
        {
            double total = dist.Sum(), pick = rng.NextDouble() * total;
            int next = 0;
            if (total > 0)
                for (double acc = 0; next < n - 1; next++) { acc += dist[next]; if (acc >= pick) break; }
            else next = centres.Count; // all points coincide with a centre: take them in order
            centres.Add((double[])x[next].Clone());
            for (int i = 0; i < n; i++) dist[i] = Math.Min(dist[i], Dist2(x[i], centres[^1]));
        }
        var label = new int[n];
        for (int round = 0; round < 100; round++)
        {
            bool changed = round == 0;
            for (int i = 0; i < n; i++)
            {
                int best = 0;
                double bd = double.PositiveInfinity;
                for (int c = 0; c < k; c++) { double dd = Dist2(x[i], centres[c]); if (dd < bd) { bd = dd; best = c; } }
                if (label[i] != best) { label[i] = best; changed = true; }
            }
            if (!changed) break;
            for (int c = 0; c < k; c++)
            {
                var members = Enumerable.Range(0, n).Where(i => label[i] == c).ToList();
                if (members.Count == 0) continue; // an empty cluster keeps its centre
                var mean = new double[x[0].Length];
                foreach (int i in members) for (int j = 0; j < mean.Length; j++) mean[j] += x[i][j] / members.Count;
                centres[c] = mean;
            }
        }
        return label;
    }

    private static double Dist2(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) { double t = a[i] - b[i]; s += t * t; }
        return s;
    }
}
