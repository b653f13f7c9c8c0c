import Foundation
import Logging
import RouterConfig
import RouterEngine
import RouterJSON
import RouterProtocol
import StableHash
import Synchronization

/// The JSONL decision log: one line per decision, appended with one write(2)
/// each, so lines from concurrent requests never interleave. A line holds the
/// decision's fields under the names the `route` reply uses, plus `prompt_hash`,
/// `time` and (with `include_prompt`) `prompt`.
///
/// `reopen()` (SIGUSR1) starts a new file at the same path after logrotate
/// moved the old one; with `max_bytes` the log rotates itself to `<path>.1`.
/// What the decision log has done since it was opened.
public struct DecisionLogCounters: Sendable, Hashable {
    public var lines: UInt64 = 0
    /// Decisions that could not be logged (disk full, an I/O error); routing went on.
    public var failedWrites: UInt64 = 0
}

/// The decision log could not be opened; the message names the path and the reason.
public struct DecisionLogError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public final class DecisionLog: Sendable {
    public let settings: DaemonConfig.DecisionLog
    private struct State {
        var fd: Int32
        var bytes: Int
        var counters = DecisionLogCounters()
        /// When a failed write was last logged: failures are logged at most once a second.
        var lastWarning: ContinuousClock.Instant?
        var failing = false
        /// A short write's fragment could not be cut off: the next line starts with a newline.
        var tornTail = false
    }
    private let state: Mutex<State>
    private let logger: Logger

    /// Opens (creating) the file for appending; throws a message naming the path.
    init(settings: DaemonConfig.DecisionLog, logger: Logger) throws(DecisionLogError) {
        self.settings = settings
        self.logger = logger
        let fd = try Self.open(settings.path)
        state = Mutex(State(fd: fd, bytes: Self.size(fd)))
    }

    deinit {
        _ = state.withLock { close($0.fd) }
    }

    /// Appends one decision.
    func record(_ decision: Decision, prompt: String) {
        append(decision.fields, prompt: prompt)
    }

    /// Appends a decision the gateway served: the decision's fields, with `served` (what the
    /// gateway did: the model that answered, its attempts, the real cost) merged in. The gateway
    /// logs once the request has ended, so the line says which model really served it.
    public func record(served decision: RoutingDecision, prompt: String, served: [String: JSONValue]) {
        append(Decision(decision).fields.merging(served) { _, new in new }, prompt: prompt)
    }

    /// Appends a shadow router's decision on a live decision's prompt: `shadow_of` names the live
    /// decision, `router` and `model` are the shadow's, `live_router` and `live_model` the live one's.
    public func record(_ shadow: ShadowDecision) {
        var fields: [String: JSONValue] = [
            "shadow_of": .string(shadow.decisionID), "router": .string(shadow.shadow), "live_router": .string(shadow.router),
            "live_model": .string(shadow.liveModel), "agrees": .bool(shadow.agrees),
        ]
        if let model = shadow.model { fields["model"] = .string(model) }
        if let score = shadow.score { fields["score"] = .number(score) }
        if let error = shadow.error { fields["error"] = .string(error) }
        append(fields, prompt: shadow.prompt)
    }

    private func append(_ decisionFields: [String: JSONValue], prompt: String) {
        var fields = decisionFields
        // FNV-1a 64 identifies repeated prompts without storing them (it is no secret, see FNV1a).
        fields["prompt_hash"] = .string(FNV1a.hex(prompt))
        fields["time"] = .number((Date().timeIntervalSince1970 * 1000).rounded() / 1000)
        if settings.includePrompt { fields["prompt"] = .string(prompt) }
        var writer = JSONWriter(capacity: 256 + (settings.includePrompt ? prompt.utf8.count : 0))
        writer.value(.object(fields))
        writer.newline()
        let entry = writer.bytes
        state.withLock { state in
            let line = state.tornTail ? [UInt8(ascii: "\n")] + entry : entry
            let written = line.withUnsafeBytes { write(state.fd, $0.baseAddress, $0.count) }
            guard written == line.count else {
                let reason = written < 0 ? String(cString: strerror(errno)) : "wrote \(written) of \(line.count) bytes"
                // A short write (a disk filling up) would leave a torn line: cut it off, so the log
                // stays whole lines and the next write starts on a line of its own.
                if written > 0, ftruncate(state.fd, off_t(state.bytes)) != 0 {
                    // The fragment stays: start the next line on a line of its own.
                    state.tornTail = true
                }
                state.counters.failedWrites += 1
                state.failing = true
                // Routing goes on whatever the log does; say so at most once a second, not per decision.
                let now = ContinuousClock.now
                if state.lastWarning.map({ now - $0 >= .seconds(1) }) ?? true {
                    state.lastWarning = now
                    logger.warning(
                        "decision log write failed; routing continues, and failed writes are counted in stats",
                        metadata: ["path": "\(settings.path)", "error": "\(reason)", "failed_writes": "\(state.counters.failedWrites)"])
                }
                return
            }
            if state.failing {
                state.failing = false
                logger.notice(
                    "decision log writable again", metadata: ["path": "\(settings.path)", "failed_writes": "\(state.counters.failedWrites)"])
            }
            state.tornTail = false
            state.counters.lines += 1
            state.bytes += written
            if settings.maxBytes > 0, state.bytes >= settings.maxBytes { rotate(&state) }
        }
    }

    /// The log `settings` ask for: `current` when its settings are the same, else a newly opened one.
    public static func opened(for settings: DaemonConfig.DecisionLog?, reusing current: DecisionLog?, logger: Logger) throws(DecisionLogError)
        -> DecisionLog?
    {
        guard let settings else { return nil }
        if let current, current.settings == settings { return current }
        return try DecisionLog(settings: settings, logger: logger)
    }

    /// Lines written and writes that failed, since this log was opened.
    public var counters: DecisionLogCounters { state.withLock { $0.counters } }

    /// Closes the file and opens `path` anew (after logrotate moved it away).
    public func reopen() {
        state.withLock { state in
            guard let fd = try? Self.open(settings.path) else {
                logger.error("cannot reopen the decision log; still writing to the old file", metadata: ["path": "\(settings.path)"])
                return
            }
            close(state.fd)
            state.fd = fd
            state.bytes = Self.size(fd)
        }
        logger.info("decision log reopened", metadata: ["path": "\(settings.path)"])
    }

    private func rotate(_ state: inout State) {
        guard rename(settings.path, settings.path + ".1") == 0, let fd = try? Self.open(settings.path) else {
            logger.error("cannot rotate the decision log", metadata: ["path": "\(settings.path)", "error": "\(String(cString: strerror(errno)))"])
            return
        }
        OwnedFiles.syncFolder(of: settings.path)
        close(state.fd)
        state.fd = fd
        state.bytes = 0
    }

    /// Opens (creating) the log for appending, and cuts off a torn last line a crash left, so the
    /// first line written now is not joined onto it.
    private static func open(_ path: String) throws(DecisionLogError) -> Int32 {
        let fd: Int32
        do throws(OwnedFiles.Refusal) {
            fd = try OwnedFiles.openForAppending(path, mode: 0o640)
        } catch {
            throw DecisionLogError("decision_log: \(error)")
        }
        if case .failure(let error) = TornLine.cut(fd) {
            close(fd)
            throw DecisionLogError("decision_log: cannot \(error.step) \(path): \(error.reason)")
        }
        return fd
    }

    /// Checks that the log at `settings.path` could be opened for appending, without creating it
    /// (`reload --dry-run`, `--check-config`).
    public static func check(_ settings: DaemonConfig.DecisionLog) throws(DecisionLogError) {
        let path = settings.path
        let exists = access(path, F_OK) == 0
        let target = exists ? path : (path as NSString).deletingLastPathComponent
        guard access(target.isEmpty ? "." : target, W_OK) == 0 else {
            throw DecisionLogError(
                "decision_log: cannot open \(path): \(exists ? "" : "its folder \(target.isEmpty ? "." : target): ")\(String(cString: strerror(errno)))"
            )
        }
    }

    private static func size(_ fd: Int32) -> Int {
        var info = stat()
        return fstat(fd, &info) == 0 ? Int(info.st_size) : 0
    }
}
