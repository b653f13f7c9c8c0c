import CBLAS
import Foundation

/// Makes sure OpenBLAS runs kernels that fit this CPU.
///
/// OpenBLAS 0.3.21 (Debian 12) does not recognise some current x86 CPUs and
/// falls back to its oldest kernels (Prescott, SSE3): on an AVX-512 machine
/// the encoder then runs 2.5× slower. OpenBLAS reads `OPENBLAS_CORETYPE` only
/// when it is loaded, so the fix must come before the process starts: when the
/// variable is unset and the detected core is weaker than the CPU's features,
/// the process re-executes itself once with the variable set to the best core
/// those features support.
public enum BLASKernels {
    /// The core OpenBLAS chose, e.g. "SkylakeX".
    public static var coreName: String {
        openblas_get_corename().map { String(cString: $0) } ?? "unknown"
    }

    /// The best OpenBLAS core for this CPU's features, or nil when nothing better than the default applies.
    public static func bestCore(flags: Set<String>) -> String? {
        if flags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512_bf16"]) { return "Cooperlake" }
        if flags.isSuperset(of: ["avx512f", "avx512vl", "avx512bw", "avx512dq"]) { return "SkylakeX" }
        if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// Cores that use no AVX2: worse than any `bestCore`.
    static let legacyCores: Set<String> = [
        "prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "barcelona", "katmai", "coppermine", "northwood", "banias", "sandybridge",
        "bulldozer", "piledriver", "steamroller", "excavator", "opteron", "opteron_sse3", "athlon",
    ]

    /// Re-executes the running binary with OPENBLAS_CORETYPE set when OpenBLAS
    /// picked a legacy core on a CPU that has AVX2 or AVX-512. Returns (doing
    /// nothing) when the variable is already set, when the re-execution
    /// already happened, or when the core is fine. Call it first thing in main.
    public static func reexecWithBestCoreIfNeeded() {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OPENBLAS_CORETYPE"] == nil, environment["ROUTERD_BLAS_REEXEC"] == nil else { return }
        guard legacyCores.contains(coreName.lowercased()), let best = bestCore(flags: cpuFlags()) else { return }
        setenv("OPENBLAS_CORETYPE", best, 1)
        setenv("ROUTERD_BLAS_REEXEC", "1", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // execv returned: keep running with the slow kernels rather than fail.
        unsetenv("ROUTERD_BLAS_REEXEC")
    }

    /// The CPU feature flags from /proc/cpuinfo.
    static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
            let colon = line.firstIndex(of: ":")
        else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
}
