using System.Runtime.CompilerServices;

namespace Palimpsest.Cuda.Interop;

/// <summary>
/// The text of a failed call ("cuLaunchKernel(norms.layer_norm, grid 32x1, ...)"), built only when
/// the call failed. Every launch and copy names itself for its error message; formatting that
/// string eagerly cost string allocations and integer formatting on each of the thousands of
/// driver calls in a forward, on the host path that bounds small forwards. As an interpolated
/// string handler that receives the status first, the compiler skips every formatting step when
/// the status is 0 (success).
/// </summary>
[InterpolatedStringHandler]
public ref struct CallDescription
{
    private DefaultInterpolatedStringHandler _inner;

    public CallDescription(int literalLength, int formattedCount, int status, out bool shouldAppend)
    {
        shouldAppend = status != 0;
        _inner = shouldAppend ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string s) => _inner.AppendLiteral(s);
    public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);
    public void AppendFormatted<T>(T value, string? format) => _inner.AppendFormatted(value, format);
    public void AppendFormatted(string? value) => _inner.AppendFormatted(value);

    /// <summary>The formatted text (call only when the status was non-zero).</summary>
    public string ToStringAndClear() => _inner.ToStringAndClear();
}
