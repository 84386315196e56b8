using System.Runtime.InteropServices;

namespace Palimpsest.Journal;

/// <summary>
/// Makes a rename durable: on POSIX a rename is only on disk once the directory holding it is
/// fsynced (the file's own fsync covers its bytes, not its name). .NET has no API for that.
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

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
