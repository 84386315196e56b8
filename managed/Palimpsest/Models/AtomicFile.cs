using System.Security.Cryptography;

namespace Palimpsest.Models;

/// <summary>
/// Files replaced atomically: the bytes go to a temporary file beside the target, are flushed to
/// disk, and are renamed over it (the folder then flushed, so the new name is durable too). A
/// crash or an error leaves the old file or the new one, never a half-written one; a failed write
/// removes its temporary file.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/> (which gets the temporary file's stream).</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        string tmp = $"{path}.tmp-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            DurableFs.Replace(tmp, path);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { /* the original error matters more */ }
            throw;
        }
    }

    /// <summary>Writes a UTF-8 text file atomically.</summary>
    public static void WriteAllText(string path, string text) => Write(path, fs =>
    {
        using var sw = new StreamWriter(fs, leaveOpen: true);
        sw.Write(text);
    });
}
