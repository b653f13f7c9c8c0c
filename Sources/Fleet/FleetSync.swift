import Foundation
import Logging
import RouterConfig
import RouterEngine
import RouterJSON
import Synchronization

/// What the fleet's side of this daemon has done since it started, for `stats` and Prometheus.
public struct FleetStatus: Sendable, Hashable {
    public var name: String
    public var host: String
    /// This daemon's outbox in the database: its host and its outbox's id.
    public var source: String = ""
    /// Whether the shipper's connection is up.
    public var connected: Bool = false
    /// Outcomes shipped to the database since start.
    public var shipped: UInt64 = 0
    /// Outcomes acknowledged here and not yet in the database.
    public var outboxDepth: Int64 = 0
    /// Other hosts' outcomes handed to this daemon's learner, and those no router here learns from.
    public var received: UInt64 = 0
    public var skipped: UInt64 = 0
    /// From acknowledgement on another host to being handed to this daemon's learner, over the
    /// last 1,024 outcomes received (wall clocks of two hosts: their skew adds in).
    public var lagP50Milliseconds: Double?
    public var lagP99Milliseconds: Double?
    public var lastError: String?
    /// Budget rows exchanged with the database, and the most other hosts any budget counts now.
    public var budgetExchanges: UInt64 = 0
    public var budgetPeers: Int = 0
    /// Session decisions shipped to the database, and other hosts' merged into this daemon's sessions.
    public var sessionsShipped: UInt64 = 0
    public var sessionsReceived: UInt64 = 0
    /// Times the outbox was rewritten without its shipped lines.
    public var compactions: UInt64 = 0
    /// What the fleet shares, in `fleet.share`'s words.
    public var share: [String] = []
}

/// One daemon's part in a fleet that shares outcomes through PostgreSQL.
///
/// Two threads, each with its own connection, both owned here and ended by ``stop()``:
/// - the **shipper** sends the local outbox (``FleetFiles``) to `routerd_outcomes` in batches,
///   each in one transaction with its source's `last_seq` and a NOTIFY, at least once: a batch
///   sent again after a lost reply is the same keys, and the database keeps the first;
/// - the **tailer** LISTENs, and polls as a fallback, for other sources' rows past its cursor, in
///   seq order per source, and hands each to `learn` (the engine's online learner).
///
/// The database being down, slow or refusing writes stops neither routing nor local recording:
/// the outbox grows and drains when the database is back, and the tailer resumes from its cursor.
public final class FleetSync: Sendable {
    public let settings: DaemonConfig.Fleet
    let engine: Engine
    let files: FleetFiles?
    private let lastWritten: @Sendable () -> Int64
    private let compactOutbox: (@Sendable (Int64) -> String?)?
    let logger: Logger
    let state: Mutex<FleetStatus>
    private let lags = Mutex(RecentWindow())
    /// Wakes the shipper (new outbox rows, or stop) and the tailer's waits (stop).
    private let wakeShipper = NSCondition()
    private let stopping = Atomic<Bool>(false)
    let tailerWake: (read: Int32, write: Int32)
    /// Wakes the session thread: the engine journalled a decision, or stop.
    let sessionWake: (read: Int32, write: Int32)
    private let threadsDone = Mutex(0)
    /// Set in init only, before any thread could read it.
    nonisolated(unsafe) private var threadsStarted = 0
    private let doneCondition = NSCondition()

    /// Rows per shipped batch, and per tailer query.
    static let batchRows = 2000
    /// The longest wait between connection attempts: a refused connection costs the database
    /// little, and a longer wait would add itself to the catch-up after an outage.
    static let maxBackoff = 4.0

    /// Where the outcomes this daemon shares wait to be shipped: the feedback store's folder,
    /// and the outbox's last durable seq (the store's).
    public struct Outbox: Sendable {
        public var directory: String
        public var lastWritten: @Sendable () -> Int64
        /// Rewrites the outbox without its first bytes (shipped lines); returns a problem, or nil.
        public var compact: @Sendable (Int64) -> String?

        public init(
            directory: String, lastWritten: @escaping @Sendable () -> Int64, compact: @escaping @Sendable (Int64) -> String? = { _ in nil }
        ) {
            self.directory = directory
            self.lastWritten = lastWritten
            self.compact = compact
        }
    }

    /// Starts the parts `settings.share` names: shipping the outbox (`outbox`, needed for
    /// outcomes) and tailing the fleet's outcomes into `engine`'s learner; publishing and reading
    /// budgets; shipping and merging sessions.
    public init(settings: DaemonConfig.Fleet, outbox: Outbox?, engine: Engine, logger: Logger) throws(FleetError) {
        self.settings = settings
        self.engine = engine
        self.files = outbox.map { FleetFiles(directory: $0.directory) }
        if let outbox { self.lastWritten = outbox.lastWritten } else { self.lastWritten = { 0 } }
        self.compactOutbox = outbox?.compact
        self.logger = logger
        let shipsOutcomes = settings.share.contains(.outcomes) && files != nil
        let identity = try files?.outboxIdentity()
        var status = FleetStatus(name: settings.name, host: settings.host, source: identity.map { settings.host + "/" + $0 } ?? "")
        status.share = DaemonConfig.Fleet.Share.allCases.filter { settings.share.contains($0) && ($0 != .outcomes || shipsOutcomes) }.map(\.rawValue)
        state = Mutex(status)
        tailerWake = try Self.pipe()
        sessionWake = try Self.pipe()
        // Before the threads start, so that `status` never counts shipped rows as waiting.
        if files != nil { shippedSeq.store(shippedCursor().seq, ordering: .relaxed) }
        if shipsOutcomes {
            start("routerd-fleet-ship") { [self] in shipLoop() }
            start("routerd-fleet-tail") { [self] in tailLoop() }
        }
        if settings.share.contains(.budgets) {
            start("routerd-fleet-budgets") { [self] in budgetLoop() }
        }
        if settings.share.contains(.sessions) {
            let wake = sessionWake.write
            engine.shareSessions(owner: ObjectIdentifier(self)) {
                var byte: UInt8 = 1
                _ = write(wake, &byte, 1)
            }
            start("routerd-fleet-sessions") { [self] in sessionLoop() }
        }
    }

    /// A non-blocking pipe, closed on exec: a thread polls its read end to be woken.
    private static func pipe() throws(FleetError) -> (read: Int32, write: Int32) {
        var ends: [Int32] = [0, 0]
        guard Glibc.pipe(&ends) == 0 else {
            throw FleetError("fleet: cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        return (ends[0], ends[1])
    }

    deinit {
        for fd in [tailerWake.read, tailerWake.write, sessionWake.read, sessionWake.write] { close(fd) }
    }

    private func start(_ name: String, _ body: @escaping @Sendable () -> Void) {
        threadsStarted += 1
        let thread = Thread { [self] in
            body()
            doneCondition.lock()
            threadsDone.withLock { $0 += 1 }
            doneCondition.broadcast()
            doneCondition.unlock()
        }
        thread.name = name
        thread.start()
    }

    public var status: FleetStatus {
        var status = state.withLock { $0 }
        status.outboxDepth = max(0, lastWritten() - shippedSeq.load(ordering: .relaxed))
        let quantiles = lags.withLock { $0.quantiles(["p50": 0.5, "p99": 0.99]) }
        (status.lagP50Milliseconds, status.lagP99Milliseconds) = (quantiles["p50"], quantiles["p99"])
        return status
    }

    /// The feedback store wrote to the outbox.
    public func outboxGrew() {
        wakeShipper.lock()
        wakeShipper.signal()
        wakeShipper.unlock()
    }

    /// Ends both threads (a batch in flight finishes or fails first) and waits for them.
    public func stop() {
        guard !stopping.exchange(true, ordering: .sequentiallyConsistent) else { return }
        wakeShipper.lock()
        wakeShipper.broadcast()
        wakeShipper.unlock()
        var byte: UInt8 = 1
        _ = write(tailerWake.write, &byte, 1)
        _ = write(sessionWake.write, &byte, 1)
        doneCondition.lock()
        while threadsDone.withLock({ $0 }) < threadsStarted { doneCondition.wait() }
        doneCondition.unlock()
        if settings.share.contains(.sessions) { engine.shareSessions(owner: ObjectIdentifier(self), wake: nil) }
    }

    var stopped: Bool { stopping.load(ordering: .relaxed) }
    private let shippedSeq = Atomic<Int64>(0)

    func connect(_ role: String) throws(PostgresError) -> PostgresConnection {
        try PostgresConnection(
            url: settings.url, password: settings.password, applicationName: "routerd \(settings.host) \(role)",
            timeout: settings.connectTimeoutSeconds)
    }

    func record(error: String, _ role: String) {
        let changed = state.withLock { status in
            defer { status.lastError = "\(role): \(error)" }
            return status.lastError != "\(role): \(error)"
        }
        // Logged when it changes, not on every retry.
        if changed { logger.warning("fleet: \(role): \(error)") }
    }

    /// A connection for `role` with the tables prepared and this host's `part` claimed
    /// (``claimHost(_:part:)``): what the shipper, the budget and the session threads start with.
    func openClaimed(_ role: String, part: String? = nil) throws(FleetError) -> PostgresConnection {
        let connection = try FleetError.from { () throws(PostgresError) in try connect(role) }
        try FleetSchema.prepare(connection)
        try claimHost(connection, part: part)
        return connection
    }

    /// Waits `seconds`, woken early only by stop (not by new rows or decisions): a backoff, or a
    /// thread's own interval.
    func waitForStop(_ seconds: Double) {
        var pollers = [pollfd(fd: tailerWake.read, events: Int16(POLLIN), revents: 0)]
        _ = poll(&pollers, 1, Int32(seconds * 1000))
    }

    /// Waits `seconds` on the shipper's condition (woken early by new rows or stop).
    private func pause(_ seconds: Double) {
        wakeShipper.lock()
        if !stopped { _ = wakeShipper.wait(until: Date().addingTimeInterval(seconds)) }
        wakeShipper.unlock()
    }

    // MARK: Shipping

    /// How far this fleet's rows of the outbox were shipped (another fleet's cursor does not count).
    private func shippedCursor() -> FleetFiles.Shipped {
        files?.readShipped().flatMap { $0.fleet == settings.name ? $0 : nil } ?? .init(fleet: settings.name, seq: 0, offset: 0)
    }

    private func shipLoop() {
        guard let files else { return }
        let source = state.withLock { $0.source }
        var cursor = shippedCursor()
        var connection: PostgresConnection?
        var backoff = 0.5
        var reader = open(files.outbox, O_RDONLY | O_CLOEXEC)
        defer { if reader >= 0 { close(reader) } }
        guard reader >= 0 else {
            record(error: "cannot open \(files.outbox): \(String(cString: strerror(errno)))", "shipper")
            return
        }
        while !stopped {
            if cursor.seq >= lastWritten() {
                wakeShipper.lock()
                if !stopped && cursor.seq >= lastWritten() { _ = wakeShipper.wait(until: Date().addingTimeInterval(1)) }
                wakeShipper.unlock()
                continue
            }
            do throws(FleetError) {
                if connection == nil {
                    connection = try openClaimed("shipper")
                    state.withLock { $0.connected = true }
                }
                guard let batch = try readBatch(reader, path: files.outbox, from: cursor.offset, after: cursor.seq) else {
                    // The offset does not lead to the line after the cursor's seq: a crash fell
                    // between a compaction and the cursor's update. The lines are found by seq.
                    cursor.offset = 0
                    continue
                }
                guard batch.consumed > 0 else {
                    pause(0.05)
                    continue
                }
                if !batch.lines.isEmpty {
                    try ship(batch.lines, lastSeq: batch.lastSeq, source: source, on: connection!)
                    cursor.seq = batch.lastSeq
                    shippedSeq.store(batch.lastSeq, ordering: .relaxed)
                }
                cursor.offset += Int64(batch.consumed)
                state.withLock {
                    $0.shipped += UInt64(batch.lines.count)
                    $0.lastError = nil
                }
                try files.writeShipped(cursor)
                backoff = 0.5
                // Shipped lines are dropped from the outbox once they take `outbox_compact_bytes`.
                if cursor.offset >= settings.outboxCompactBytes, let compactOutbox {
                    if let problem = compactOutbox(cursor.offset) {
                        record(error: problem, "shipper")
                    } else {
                        close(reader)
                        reader = open(files.outbox, O_RDONLY | O_CLOEXEC)
                        guard reader >= 0 else {
                            record(error: "cannot open \(files.outbox): \(String(cString: strerror(errno)))", "shipper")
                            return
                        }
                        cursor.offset = 0
                        try files.writeShipped(cursor)
                        state.withLock { $0.compactions += 1 }
                    }
                }
            } catch {
                record(error: error.message, "shipper")
                connection = nil
                state.withLock { $0.connected = false }
                pause(backoff)
                backoff = min(backoff * 2, Self.maxBackoff)
            }
        }
    }

    /// A session-level advisory lock on (fleet, host, part): two daemons shipping under one host
    /// name would hide each other's mistakes, so the second is refused until the first lets go.
    func claimHost(_ connection: PostgresConnection, part: String? = nil) throws(FleetError) {
        do {
            let key = settings.name + "/" + settings.host + (part.map { "/" + $0 } ?? "")
            let row = try connection.execute("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", [key])
            guard row.first?.first == "t" else {
                throw FleetError(
                    "another routerd ships as host '\(settings.host)' in fleet '\(settings.name)'; give each daemon its own fleet.host")
            }
        } catch let error as PostgresError {
            throw FleetError(error.message)
        } catch let error as FleetError {
            throw error
        } catch {
            throw FleetError("\(error)")
        }
    }

    /// Whole lines from `offset`, at most ``batchRows`` of them and about 4 MiB: the bytes they
    /// span, and those of them past seq `after`, with the last one's seq. Nil when the first line
    /// there is not the one after `after` (from a nonzero offset): the offset is stale.
    private func readBatch(_ fd: Int32, path: String, from offset: Int64, after: Int64) throws(FleetError) -> (
        lines: [ArraySlice<UInt8>], consumed: Int, lastSeq: Int64
    )? {
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        var count = pread(fd, &buffer, buffer.count, off_t(offset))
        guard count >= 0 else { throw FleetError("cannot read \(path): \(String(cString: strerror(errno)))") }
        if count == buffer.count, !buffer.contains(0x0A) {
            // One line longer than the buffer: read it whole.
            let size = lseek(fd, 0, SEEK_END)
            buffer = [UInt8](repeating: 0, count: Int(size - off_t(offset)))
            count = pread(fd, &buffer, buffer.count, off_t(offset))
        }
        if count == 0, offset > 0, lseek(fd, 0, SEEK_END) < off_t(offset), after < lastWritten() {
            return nil  // past the end of a compacted file
        }
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        var index = 0
        var lastSeq: Int64 = 0
        var whole = 0
        while index < count, whole < Self.batchRows {
            if buffer[index] == 0x0A {
                let line = buffer[start..<index]
                guard let seq = FleetOutcome.seq(ofLine: line) else {
                    if offset > 0, whole == 0 { return nil }
                    throw FleetError("\(path) holds a line that is not an outbox row at byte \(offset + Int64(start)); move the file aside")
                }
                if whole == 0, offset > 0, seq != after + 1 { return nil }
                if seq > after {
                    lines.append(line)
                    lastSeq = seq
                }
                whole += 1
                start = index + 1
            }
            index += 1
        }
        return (lines, start, lastSeq)
    }

    private func ship(_ lines: [ArraySlice<UInt8>], lastSeq: Int64, source: String, on connection: PostgresConnection) throws(FleetError) {
        var array: [UInt8] = [0x5B]
        for (index, line) in lines.enumerated() {
            if index > 0 { array.append(0x2C) }
            array += line
        }
        array.append(0x5D)
        let record = FleetOutcome.columns.map { "\($0.name) \($0.type)" }.joined(separator: ", ")
        let names = FleetOutcome.columns.map(\.name)
        do {
            try connection.execute("BEGIN")
            try connection.execute(
                """
                INSERT INTO routerd_outcomes (fleet, source, host, \(names.joined(separator: ", ")))
                SELECT $1, $2, $3, \(names.map { "r." + $0 }.joined(separator: ", "))
                FROM jsonb_to_recordset($4::jsonb) AS r(\(record))
                ON CONFLICT DO NOTHING
                """, [settings.name, source, settings.host, String(decoding: array, as: UTF8.self)])
            try connection.execute(
                """
                INSERT INTO routerd_sources (fleet, source, host, last_seq) VALUES ($1, $2, $3, $4)
                ON CONFLICT (fleet, source) DO UPDATE SET last_seq = GREATEST(routerd_sources.last_seq, EXCLUDED.last_seq), updated_at = now()
                """, [settings.name, source, settings.host, String(lastSeq)])
            // Delivered at commit, with the rows.
            try connection.execute("SELECT pg_notify('routerd_outcomes', $1)", [settings.name])
            try connection.execute("COMMIT")
        } catch {
            if error.kind == .statement { _ = try? connection.execute("ROLLBACK") }
            throw FleetError(error.message)
        }
    }

    // MARK: Tailing

    private func tailLoop() {
        guard let files else { return }
        let source = state.withLock { $0.source }
        var cursor = files.readTail(fleet: settings.name)
        var connection: PostgresConnection?
        var backoff = 0.5
        let columns = FleetOutcome.tailColumns.map { "o." + $0 }.joined(separator: ", ")
        let query = """
            SELECT \(columns)
            FROM routerd_sources s
            CROSS JOIN LATERAL (
                SELECT * FROM routerd_outcomes o
                WHERE o.fleet = s.fleet AND o.source = s.source AND o.seq > coalesce(($2::jsonb ->> s.source)::bigint, 0)
                ORDER BY o.seq LIMIT \(Self.batchRows)
            ) o
            WHERE s.fleet = $1 AND s.source <> $3 AND s.last_seq > coalesce(($2::jsonb ->> s.source)::bigint, 0)
            ORDER BY o.source, o.seq
            """
        while !stopped {
            do throws(PostgresError) {
                if connection == nil {
                    let opened = try connect("tailer")
                    // The tables may not exist yet: a daemon that has shipped nothing must still
                    // find the others' rows without waiting out a backoff.
                    do throws(FleetError) { try FleetSchema.prepare(opened) } catch { throw PostgresError(.statement, error.message) }
                    try opened.execute("LISTEN routerd_outcomes")
                    connection = opened
                }
                let cursorJSON = JSONCursor.text(cursor)
                let rows = try connection!.execute(query, [settings.name, cursorJSON, source])
                var received: UInt64 = 0
                var skipped: UInt64 = 0
                let now = Date().timeIntervalSince1970
                var newLags: [Double] = []
                for row in rows {
                    guard let from = row[0], let seq = row[1].flatMap(Int64.init) else { continue }
                    cursor[from] = max(cursor[from] ?? 0, seq)
                    guard let (outcome, acknowledged) = FleetOutcome.outcome(fromRow: row) else {
                        skipped += 1
                        continue
                    }
                    if engine.learnShared(outcome) {
                        received += 1
                        newLags.append(max(0, now - acknowledged) * 1000)
                    } else {
                        skipped += 1
                    }
                }
                if !rows.isEmpty {
                    lags.withLock { window in newLags.forEach { window.append($0) } }
                    state.withLock {
                        $0.received += received
                        $0.skipped += skipped
                    }
                    do throws(FleetError) { try files.writeTail(fleet: settings.name, cursor) } catch { record(error: error.message, "tailer") }
                }
                backoff = 0.5
                // A full page: more is waiting. Otherwise sleep until a NOTIFY, the poll interval, or stop.
                if rows.count < Self.batchRows {
                    _ = try connection!.waitForNotification(timeout: settings.pollIntervalSeconds, wake: tailerWake.read)
                }
            } catch {
                record(error: error.message, "tailer")
                connection = nil
                waitForStop(backoff)
                backoff = min(backoff * 2, Self.maxBackoff)
            }
        }
    }
}

/// The tailer's cursor as the JSON object its query reads (`{source: seq}`).
enum JSONCursor {
    static func text(_ cursor: [String: Int64]) -> String {
        JSONValue.object(cursor.mapValues { .integer($0) }).text
    }
}
