import Fleet
import Foundation
import Logging
import RouterConfig
import RouterEngine
import RouterJSON
import StableHash
import Synchronization
import TrainingRows

/// The feedback store could not be opened, or a row could not be made durable (nothing was acknowledged).
public struct FeedbackStoreError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Outcomes as training rows, appended to two files in one folder: `battles.jsonl`
/// (`{prompt, model_a, model_b, winner}`) for outcomes against another model, and
/// `quality.jsonl` (`{prompt, quality: {model: value}}`) for pointwise ones. These are the
/// formats `routerctl train` reads, and plain JSONL that a log pipeline can gather.
///
/// Durable before acknowledged, by group commit: one writer thread takes every queued row,
/// waits `sync_interval_ms` for more to share the sync, writes each file's rows with one
/// write(2), `fdatasync`s, and only then calls each row's completion, after which the
/// daemon replies. An acknowledged row therefore survives a crash of the daemon or of the
/// machine. A crash mid-write can leave a torn last line, which was never acknowledged;
/// opening the store cuts it off, so every line in the files is whole.
///
/// With a fleet that shares outcomes, each outcome is also written, in the same commit and
/// before the reply, to the fleet's outbox (`fleet-outbox.jsonl`, numbered by its own counter),
/// from which the fleet's shipper sends it to PostgreSQL (``FleetSync``).
public final class FeedbackStore: @unchecked Sendable {  // Mutable state is guarded by `condition`.
    public enum File: String, Sendable, CaseIterable {
        case battles, quality
        var fileName: String { rawValue + ".jsonl" }
    }

    public struct Counters: Sendable, Hashable {
        public var rows: UInt64 = 0
        public var syncs: UInt64 = 0
        public var failedWrites: UInt64 = 0
        /// Torn last lines cut off when the store was opened.
        public var tornLines: UInt64 = 0
    }

    public typealias Completion = @Sendable (Result<Void, FeedbackStoreError>) -> Void

    private struct Pending {
        var file: File
        var line: [UInt8]
        var completion: Completion
        /// For the outbox, when there is one.
        var outcome: Outcome
        var time: Double
    }

    public let settings: DaemonConfig.Feedback
    /// The fleet's outbox, when the fleet shares outcomes: its descriptor, and the next seq to write.
    private let outbox: Int32?
    private var nextOutboxSeq: Int64
    /// The seq of the last outcome durably in the outbox (0: none), and who to wake when it moves.
    private let outboxWritten: Mutex<Int64>
    private let outboxObserver = Mutex<(@Sendable () -> Void)?>(nil)
    /// Whether outcomes also go to the fleet's outbox.
    public var writesOutbox: Bool { outbox != nil }
    private let logger: Logger
    private let descriptors: [File: Int32]
    private let condition = NSCondition()
    private var queue: [Pending] = []
    /// A compaction of the outbox the fleet's shipper waits for (under `condition`): the bytes to
    /// drop, then its result.
    private var compactionRequest: Int64?
    private var compactionResult: Result<Void, FeedbackStoreError>?
    private var closing = false
    private var writerDone = false
    private var lastWarning: ContinuousClock.Instant?
    private let counterBox: Mutex<Counters>

    /// Creates the folder and files if needed, cuts off torn last lines, and starts the writer;
    /// with `outbox`, opens the fleet's outbox too and finds where its numbering stopped.
    public init(settings: DaemonConfig.Feedback, outbox wantsOutbox: Bool = false, logger: Logger) throws(FeedbackStoreError) {
        self.settings = settings
        self.logger = logger
        let directory = settings.directory
        let folder: Int32
        do throws(OwnedFiles.Refusal) {
            folder = try OwnedFiles.openFolder(directory, create: true)
        } catch {
            throw FeedbackStoreError("feedback: \(error)")
        }
        defer { Glibc.close(folder) }
        var descriptors: [File: Int32] = [:]
        var counters = Counters()
        do throws(FeedbackStoreError) {
            for file in File.allCases {
                let path = directory + "/" + file.fileName
                let fd: Int32
                do throws(OwnedFiles.Refusal) {
                    fd = try OwnedFiles.openForAppending(path, mode: 0o640)
                } catch {
                    throw FeedbackStoreError("feedback: \(error)")
                }
                descriptors[file] = fd
                if let dropped = try Self.cutTornLine(fd, path: path) {
                    counters.tornLines += 1
                    logger.warning(
                        "feedback: cut off a torn last line (a crash mid-write; it was never acknowledged)",
                        metadata: ["path": "\(path)", "bytes": "\(dropped)"])
                }
            }
        } catch {
            for fd in descriptors.values { Glibc.close(fd) }
            throw error
        }
        var outbox: Int32?
        var lastSeq: Int64 = 0
        if wantsOutbox {
            do throws(FeedbackStoreError) {
                let files = FleetFiles(directory: directory)
                let fd: Int32
                do throws(OwnedFiles.Refusal) {
                    fd = try OwnedFiles.openForAppending(files.outbox, mode: 0o600)
                } catch {
                    throw FeedbackStoreError("feedback: \(error)")
                }
                outbox = fd
                if let dropped = try Self.cutTornLine(fd, path: files.outbox) {
                    counters.tornLines += 1
                    logger.warning(
                        "fleet: cut off a torn last line of the outbox (a crash mid-write; it was never acknowledged)",
                        metadata: ["path": "\(files.outbox)", "bytes": "\(dropped)"])
                }
                do throws(FleetError) {
                    try files.ensureOutboxID()
                    lastSeq = try files.lastOutboxSeq(fd)
                } catch {
                    throw FeedbackStoreError("feedback: \(error.message)")
                }
            } catch {
                for fd in descriptors.values { Glibc.close(fd) }
                if let outbox { Glibc.close(outbox) }
                throw error
            }
        }
        // The files' names must survive a crash too.
        fsync(folder)
        self.descriptors = descriptors
        self.outbox = outbox
        nextOutboxSeq = lastSeq + 1
        outboxWritten = Mutex(lastSeq)
        counterBox = Mutex(counters)
        let thread = Thread { [self] in writeLoop() }
        thread.name = "routerd-feedback"
        thread.start()
    }

    deinit {
        for fd in descriptors.values { Glibc.close(fd) }
        if let outbox { Glibc.close(outbox) }
    }

    public var counters: Counters { counterBox.withLock { $0 } }

    /// The seq of the last outcome durably in the fleet's outbox (0: none yet).
    public var lastOutboxSeq: Int64 { outboxWritten.withLock { $0 } }

    /// Calls `observer` on the writer thread after each commit that added to the outbox (the
    /// fleet's shipper wakes on it); nil stops.
    public func observeOutbox(_ observer: (@Sendable () -> Void)?) {
        outboxObserver.withLock { $0 = observer }
    }

    /// The row for `outcome`, and the file it goes to.
    func row(for outcome: Outcome, time: Double) -> (File, [UInt8]) {
        var extra: [String: JSONValue] = [
            "router": .string(outcome.router), "time": .number((time * 1000).rounded() / 1000), "source": .string("feedback"),
        ]
        if let id = outcome.decisionID { extra["decision_id"] = .string(id) }
        // What off-policy estimates need: how likely the decision's model was, and whether it explored.
        if let propensity = outcome.propensity { extra["propensity"] = .number(propensity) }
        if let explored = outcome.explored { extra["explored"] = .bool(explored) }
        let prompt: RowPrompt = settings.includePrompt ? .text(outcome.prompt) : .hash(FNV1a.hex(outcome.prompt))
        switch outcome.value {
        case .pairwise(let result, let against):
            // The reported model is model_a, so its result is the winner field as is.
            let row = BattleRow(prompt: prompt, modelA: outcome.model, modelB: against, winner: BattleWinner(result), extra: extra)
            return (.battles, row.line())
        case .pointwise(let quality):
            return (.quality, QualityRow(prompt: prompt, quality: [outcome.model: quality], extra: extra).line())
        case .failed:
            // Quality 0 for whatever reads quality files, marked so it can be told from a wrong answer.
            extra["outcome"] = .string("failed")
            return (.quality, QualityRow(prompt: prompt, quality: [outcome.model: 0], extra: extra).line())
        }
    }

    /// The store `settings` ask for: `current` when its settings (and whether it feeds an outbox)
    /// are the same, else a newly opened one.
    public static func opened(
        for settings: DaemonConfig.Feedback?, outbox: Bool = false, reusing current: FeedbackStore?, logger: Logger
    ) throws(FeedbackStoreError) -> FeedbackStore? {
        guard let settings else { return nil }
        if let current, current.settings == settings, current.writesOutbox == outbox { return current }
        return try FeedbackStore(settings: settings, outbox: outbox, logger: logger)
    }

    /// Writes `outcome` (``append(_:completion:)``), then, once it is on disk, hands it to
    /// `engine`'s online learning: learning from what is on disk keeps the online state and the
    /// store in agreement. What the socket's `feedback` op and the gateway record goes this way.
    public func record(_ outcome: Outcome, learningIn engine: Engine, completion: @escaping Completion) {
        append(outcome) { result in
            if case .success = result { engine.learn(outcome, on: engine.current) }
            completion(result)
        }
    }

    /// Queues `outcome`'s row; `completion` runs on the writer thread once the row is durable, or failed.
    public func append(_ outcome: Outcome, completion: @escaping Completion) {
        let time = Date().timeIntervalSince1970
        let (file, line) = row(for: outcome, time: time)
        condition.lock()
        defer { condition.unlock() }
        guard !closing else {
            completion(.failure(FeedbackStoreError("feedback: the store at \(settings.directory) is closing (a reload replaced it); send again")))
            return
        }
        queue.append(Pending(file: file, line: line, completion: completion, outcome: outcome, time: time))
        condition.signal()
    }

    /// Writes what is queued, then stops the writer; blocks until it has.
    public func close() {
        condition.lock()
        closing = true
        condition.broadcast()
        while !writerDone { condition.wait() }
        condition.unlock()
    }

    /// Rewrites the outbox without its first `offset` bytes, lines the fleet has shipped, and
    /// waits until it is done. The writer does it between two commits, so no append interleaves:
    /// the remaining lines are copied to a new file, synced, renamed over the outbox, and the
    /// writer's descriptor is pointed at the new file (`dup2`). A crash at any point leaves either
    /// file whole; the shipper finds its place again by seq (``FleetSync``).
    public func compactOutbox(before offset: Int64) throws(FeedbackStoreError) {
        condition.lock()
        compactionRequest = offset
        compactionResult = nil
        condition.broadcast()
        while compactionResult == nil && !writerDone { condition.wait() }
        let result = compactionResult
        compactionRequest = nil
        compactionResult = nil
        condition.unlock()
        switch result {
        case .success?: return
        case .failure(let error)?: throw error
        case nil: throw FeedbackStoreError("feedback: the store closed before compacting the outbox")
        }
    }

    private func writeLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && !closing && (compactionRequest == nil || compactionResult != nil) { condition.wait() }
            if let offset = compactionRequest, compactionResult == nil {
                condition.unlock()
                let result = compact(before: offset)
                condition.lock()
                compactionResult = result
                condition.broadcast()
                condition.unlock()
                continue
            }
            if queue.isEmpty && closing {
                writerDone = true
                condition.broadcast()
                condition.unlock()
                return
            }
            condition.unlock()
            // Group commit: let other replies join this sync.
            if settings.syncIntervalSeconds > 0 { Thread.sleep(forTimeInterval: settings.syncIntervalSeconds) }
            condition.lock()
            let batch = queue
            queue = []
            condition.unlock()
            commit(batch)
        }
    }

    private func commit(_ batch: [Pending]) {
        // The outbox first: a row that cannot reach it is not written anywhere, and fails.
        if let outbox {
            var bytes: [UInt8] = []
            var seq = nextOutboxSeq
            for row in batch {
                bytes += FleetOutcome.line(row.outcome, seq: seq, time: row.time)
                bytes.append(0x0A)
                seq += 1
            }
            let result = write(bytes, fd: outbox, path: FleetFiles(directory: settings.directory).outbox)
            if case .failure(let error) = result {
                counterBox.withLock { $0.failedWrites += UInt64(batch.count) }
                warn(error, rows: batch.count)
                for row in batch { row.completion(result) }
                return
            }
            nextOutboxSeq = seq
            outboxWritten.withLock { $0 = seq - 1 }
        }
        defer { if outbox != nil { outboxObserver.withLock { $0 }?() } }
        for file in File.allCases {
            let rows = batch.filter { $0.file == file }
            guard !rows.isEmpty else { continue }
            let result = write(rows.flatMap(\.line), fd: descriptors[file]!, path: settings.directory + "/" + file.fileName)
            counterBox.withLock { counters in
                switch result {
                case .success:
                    counters.rows += UInt64(rows.count)
                    counters.syncs += 1
                case .failure: counters.failedWrites += UInt64(rows.count)
                }
            }
            if case .failure(let error) = result { warn(error, rows: rows.count) }
            for row in rows { row.completion(result) }
        }
    }

    /// The writer's half of ``compactOutbox(before:)``.
    private func compact(before offset: Int64) -> Result<Void, FeedbackStoreError> {
        guard let outbox else { return .failure(FeedbackStoreError("feedback: this store has no outbox")) }
        let path = FleetFiles(directory: settings.directory).outbox
        func failure(_ what: String) -> Result<Void, FeedbackStoreError> {
            .failure(FeedbackStoreError("fleet: compacting \(path): \(what): \(String(cString: strerror(errno)))"))
        }
        var info = stat()
        guard fstat(outbox, &info) == 0 else { return failure("cannot stat it") }
        guard offset > 0, offset <= Int64(info.st_size) else { return .success(()) }
        let staging = path + ".compacting"
        // Opened for appending: after the rename this descriptor is the outbox's, so the writer
        // never holds one that names an unlinked file.
        let target = open(staging, O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard target >= 0 else { return failure("cannot create \(staging)") }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var position = off_t(offset)
        while true {
            let count = pread(outbox, &buffer, buffer.count, position)
            guard count >= 0 else {
                Glibc.close(target)
                return failure("cannot read it")
            }
            if count == 0 { break }
            guard Glibc.write(target, buffer, count) == count else {
                Glibc.close(target)
                return failure("cannot write \(staging)")
            }
            position += off_t(count)
        }
        guard fsync(target) == 0 else {
            Glibc.close(target)
            return failure("cannot sync \(staging)")
        }
        guard rename(staging, path) == 0 else {
            Glibc.close(target)
            return failure("cannot rename \(staging) over it")
        }
        // The folder is synced, as at start, so the rename outlives a crash.
        if let folder = try? OwnedFiles.openFolder(settings.directory, create: false) {
            fsync(folder)
            Glibc.close(folder)
        }
        // The writer's descriptor now names the new file; the old one goes with its last reference.
        dup2(target, outbox)
        Glibc.close(target)
        return .success(())
    }

    /// Appends `bytes` and syncs them; on any failure cuts the file back, so no unacknowledged row stays.
    private func write(_ bytes: [UInt8], fd: Int32, path: String) -> Result<Void, FeedbackStoreError> {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(FeedbackStoreError("feedback: cannot stat \(path): \(String(cString: strerror(errno)))")) }
        let start = info.st_size
        var offset = 0
        var problem: String?
        bytes.withUnsafeBytes { buffer in
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    problem = String(cString: strerror(errno))
                    return
                }
                offset += written
            }
        }
        if problem == nil, fdatasync(fd) != 0 { problem = "fdatasync: " + String(cString: strerror(errno)) }
        guard let problem else { return .success(()) }
        _ = ftruncate(fd, start)
        return .failure(FeedbackStoreError("feedback: cannot write \(path): \(problem); nothing was recorded"))
    }

    /// Failed writes are logged at most once a second, not per row.
    private func warn(_ error: FeedbackStoreError, rows: Int) {
        let now = ContinuousClock.now
        guard lastWarning.map({ now - $0 >= .seconds(1) }) ?? true else { return }
        lastWarning = now
        logger.warning("\(error.message)", metadata: ["rows": "\(rows)", "failed_writes": "\(counters.failedWrites)"])
    }

    /// Checks that the store's folder exists or could be made, and its files could be appended to,
    /// without creating anything (`reload --dry-run`).
    public static func check(_ settings: DaemonConfig.Feedback) throws(FeedbackStoreError) {
        let directory = settings.directory
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isFolder) {
            guard isFolder.boolValue else { throw FeedbackStoreError("feedback: \(directory) is not a folder") }
            for file in File.allCases {
                let path = directory + "/" + file.fileName
                let target = access(path, F_OK) == 0 ? path : directory
                guard access(target, W_OK) == 0 else {
                    throw FeedbackStoreError("feedback: cannot write \(target): \(String(cString: strerror(errno)))")
                }
            }
        } else {
            let parent = (directory as NSString).deletingLastPathComponent
            var parentIsFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: parent, isDirectory: &parentIsFolder), parentIsFolder.boolValue else {
                throw FeedbackStoreError("feedback: cannot create the folder \(directory): \(parent) is not a folder")
            }
            guard access(parent, W_OK) == 0 else {
                throw FeedbackStoreError("feedback: cannot create the folder \(directory): \(parent): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Cuts the file back to its last newline when it does not end in one; returns the bytes dropped.
    static func cutTornLine(_ fd: Int32, path: String) throws(FeedbackStoreError) -> Int? {
        switch TornLine.cut(fd) {
        case .success(let dropped): return dropped
        case .failure(let error): throw FeedbackStoreError("feedback: cannot \(error.step) \(path): \(error.reason)")
        }
    }
}
