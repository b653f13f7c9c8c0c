import RouterConfig
import RouterVocabulary
import TextEncoder

/// What a generation sets for the whole process, applied when the generation is
/// swapped in and never while it is built, so a check, a dry run or `routerctl eval`
/// changes nothing in the process that runs them.
public struct ProcessSettings: Sendable {
    /// Applies `config`'s process-wide settings.
    public var apply: @Sendable (DaemonConfig) -> Void

    public init(apply: @escaping @Sendable (DaemonConfig) -> Void) { self.apply = apply }

    /// OpenBLAS has one thread count per process: the largest any encoder asks for.
    public static let encoderThreads = ProcessSettings { config in
        if let threads = config.encoders.values.map(\.threads).max() {
            let kernel: LinearKernel = config.encoders.values.contains { $0.kernel == .openblas } ? .openblas : .onednn
            SentenceEncoder.setThreads(threads, kernel: kernel)
        }
    }
}
