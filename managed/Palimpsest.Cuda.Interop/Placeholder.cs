namespace Palimpsest.Cuda.Interop; internal static class Placeholder {}
