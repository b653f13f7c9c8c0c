import Foundation
import Logging
import NIOConcurrencyHelpers
import RouterConfig
import RouterProtocol
import StableHash

/// The JSONL decision log: one line per decision, appended with one write(2)
/// each, so lines from concurrent requests never interleave.
///
/// `reopen()` (SIGUSR1) starts a new file at the same path after logrotate
/// moved the old one; with `max_bytes` the log rotates itself to `<path>.1`.
public final class DecisionLog: Sendable {
    public let settings: DaemonConfig.DecisionLog
    private struct State {
        var fd: Int32
        var bytes: Int
    }
    private let state: NIOLockedValueBox<State>
    private let logger: Logger

    /// Opens (creating) the file for appending; throws a message naming the path.
    init(settings: DaemonConfig.DecisionLog, logger: Logger) throws(GenerationError) {
        self.settings = settings
        self.logger = logger
        let fd = try Self.open(settings.path)
        state = NIOLockedValueBox(State(fd: fd, bytes: Self.size(fd)))
    }

    deinit {
        _ = state.withLockedValue { close($0.fd) }
    }

    /// Appends one decision.
    func record(_ decision: Decision, prompt: String) {
        var writer = JSONWriter(capacity: 256 + (settings.includePrompt ? prompt.utf8.count : 0))
        writer.beginObject()
        writer.key("generation")
        writer.number(decision.generation)
        writer.key("latency_us")
        writer.number(decision.elapsedMicroseconds)
        writer.key("model")
        writer.string(decision.model)
        if settings.includePrompt {
            writer.key("prompt")
            writer.string(prompt)
        }
        // FNV-1a 64 identifies repeated prompts without storing them (it is no secret, see FNV1a).
        writer.key("prompt_hash")
        writer.string(Self.hash(prompt))
        writer.key("router")
        writer.string(decision.router)
        writer.key("score")
        writer.number(decision.score)
        writer.key("threshold")
        writer.number(decision.threshold)
        writer.key("tier")
        writer.string(decision.tier.rawValue)
        writer.key("time")
        writer.number((Date().timeIntervalSince1970 * 1000).rounded() / 1000)
        writer.endObject()
        writer.newline()
        let line = writer.bytes
        state.withLockedValue { state in
            let written = line.withUnsafeBytes { write(state.fd, $0.baseAddress, $0.count) }
            if written < 0 {
                logger.warning("decision log write failed", metadata: ["path": "\(settings.path)", "error": "\(String(cString: strerror(errno)))"])
                return
            }
            state.bytes += written
            if settings.maxBytes > 0, state.bytes >= settings.maxBytes { rotate(&state) }
        }
    }

    /// Closes the file and opens `path` anew (after logrotate moved it away).
    public func reopen() {
        state.withLockedValue { state in
            guard let fd = try? Self.open(settings.path) else {
                logger.error("cannot reopen the decision log; still writing to the old file", metadata: ["path": "\(settings.path)"])
                return
            }
            close(state.fd)
            state = State(fd: fd, bytes: Self.size(fd))
        }
        logger.info("decision log reopened", metadata: ["path": "\(settings.path)"])
    }

    private func rotate(_ state: inout State) {
        guard rename(settings.path, settings.path + ".1") == 0, let fd = try? Self.open(settings.path) else {
            logger.error("cannot rotate the decision log", metadata: ["path": "\(settings.path)", "error": "\(String(cString: strerror(errno)))"])
            return
        }
        close(state.fd)
        state = State(fd: fd, bytes: 0)
    }

    private static func open(_ path: String) throws(GenerationError) -> Int32 {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw GenerationError(problems: ["decision_log: cannot open \(path): \(String(cString: strerror(errno)))"])
        }
        return fd
    }

    private static func size(_ fd: Int32) -> Int {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int(info.st_size) : 0
    }

    static func hash(_ text: String) -> String {
        let hex = String(FNV1a.hash(text), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
