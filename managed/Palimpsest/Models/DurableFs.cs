using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Palimpsest.Models;

/// <summary>
/// Makes a rename durable: on POSIX a rename is only on disk once the directory holding it is
/// fsynced (the file's own fsync covers its bytes, not its name). .NET has no API for that.
/// On it: folders that appear complete or not at all, and write failures said about the folder.
/// </summary>
internal static partial class DurableFs
{
    public static void FsyncDirectory(string dir)
    {
        // Windows (NTFS) journals metadata itself and cannot open a directory handle for flushing.
        if (OperatingSystem.IsWindows()) return;
        int fd = Open(dir, 0 /* O_RDONLY */);
        if (fd < 0) throw new IOException($"{dir}: cannot open the folder to flush it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"{dir}: fsync of the folder failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally { _ = Close(fd); }
    }

    /// <summary>rename(2) over the target, then make the new name durable.</summary>
    public static void Replace(string from, string to)
    {
        File.Move(from, to, overwrite: true);
        FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(to))!);
    }

    /// <summary>Checks that <paramref name="outDir"/> (a full path) is absent or an empty folder, and returns its parent.</summary>
    public static string CheckNewFolder(string outDir)
    {
        if (File.Exists(outDir)) throw new IOException($"{outDir}: exists and is a file");
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
            throw new IOException($"{outDir}: folder exists and is not empty");
        return Path.GetDirectoryName(outDir) ?? throw new IOException($"{outDir}: has no parent folder");
    }

    /// <summary>
    /// Makes <paramref name="outDir"/> (checked by <see cref="CheckNewFolder"/>) appear complete or not
    /// at all: <paramref name="fill"/> writes its files into OUT.{tag}-RANDOM beside it, which is flushed
    /// and renamed into place. A failure removes the half-built folder and rethrows.
    /// </summary>
    public static void BuildFolder(string outDir, string tag, Action<string> fill)
    {
        string parent = Path.GetDirectoryName(outDir)!;
        Directory.CreateDirectory(parent);
        string tmp = $"{outDir}.{tag}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
            FsyncDirectory(tmp);
            if (Directory.Exists(outDir)) Directory.Delete(outDir); // empty, checked by PrepareNewFolder
            Directory.Move(tmp, outDir);
            FsyncDirectory(parent);
        }
        catch
        {
            try { Directory.Delete(tmp, recursive: true); } catch (IOException) { /* the original error matters more */ }
            throw;
        }
    }

    /// <summary>A write's file-system failure in words about the folder (not .NET's message about a temporary path).</summary>
    public static string WhyNotWritten(Exception e, string dir)
    {
        if (e is UnauthorizedAccessException) return $"no permission to write in {dir}";
        if ((e.HResult & 0xFFFF) == 28 || e.Message.Contains("No space left", StringComparison.Ordinal)) return $"no space left on the device of {dir}";
        return e.Message.Split('\n')[0].Split(" : '")[0].TrimEnd('.');
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
