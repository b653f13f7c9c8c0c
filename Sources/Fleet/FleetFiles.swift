import Foundation
import RouterJSON

/// The fleet's local files, in the feedback folder beside `quality.jsonl`:
///
/// - `fleet-outbox.jsonl`: every outcome acknowledged here, numbered (written by the feedback
///   store in the same commit as its own row, so an acknowledged outcome is in both);
/// - `fleet-outbox.id`: the outbox's random id. With the host's name it makes the outbox's source
///   name in the database, so a folder wiped and started afresh numbers from 1 again without
///   colliding with what it shipped before;
/// - `fleet-shipped.json`: how far the outbox has been shipped (seq and byte offset);
/// - `fleet-tail.json`: the last seq learned from each other source.
///
/// The two cursors are written by rename, without a sync: a cursor that a crash sets back only
/// ships rows again (the database keeps the first) or learns rows again (see docs/OPERATIONS.md).
public struct FleetFiles: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public var outbox: String { directory + "/fleet-outbox.jsonl" }
    var outboxID: String { directory + "/fleet-outbox.id" }
    var shipped: String { directory + "/fleet-shipped.json" }
    var tail: String { directory + "/fleet-tail.json" }

    /// Creates the outbox's id if it has none (and syncs it: the id must outlive a crash that the
    /// outbox's rows outlive).
    public func ensureOutboxID() throws(FleetError) {
        if let id = try? String(contentsOfFile: outboxID, encoding: .utf8), !id.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            return
        }
        var random = SystemRandomNumberGenerator()
        let id = String(random.next() as UInt64, radix: 16)
        let fd = open(outboxID, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw FleetError("fleet: cannot create \(outboxID): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array((id + "\n").utf8)
        guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            throw FleetError("fleet: cannot write \(outboxID): \(String(cString: strerror(errno)))")
        }
    }

    /// The outbox's id (``ensureOutboxID()`` made it).
    func outboxIdentity() throws(FleetError) -> String {
        guard let text = try? String(contentsOfFile: outboxID, encoding: .utf8) else {
            throw FleetError("fleet: cannot read \(outboxID); the feedback store creates it")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The seq the outbox (open as `fd`, ending in a whole line) was numbered up to: its last
    /// line's, or what the shipped cursor says, whichever is larger (0 when both are empty).
    public func lastOutboxSeq(_ fd: Int32) throws(FleetError) -> Int64 {
        let size = lseek(fd, 0, SEEK_END)
        guard size >= 0 else { throw FleetError("fleet: cannot seek \(outbox): \(String(cString: strerror(errno)))") }
        var fromOutbox: Int64 = 0
        if size > 0 {
            // Back from the end, a chunk at a time, to the newline before the last line.
            var tailBytes: [UInt8] = []
            var position = Int64(size)
            let chunk: Int64 = 64 << 10
            repeat {
                let start = max(0, position - chunk)
                var buffer = [UInt8](repeating: 0, count: Int(position - start))
                guard pread(fd, &buffer, buffer.count, off_t(start)) == buffer.count else {
                    throw FleetError("fleet: cannot read \(outbox): \(String(cString: strerror(errno)))")
                }
                tailBytes = buffer + tailBytes
                position = start
            } while position > 0 && !tailBytes.dropLast().contains(0x0A)
            let body = tailBytes.dropLast()
            let lastLine = body.lastIndex(of: 0x0A).map { body[($0 + 1)...] } ?? body[...]
            guard let seq = FleetOutcome.seq(ofLine: lastLine) else {
                throw FleetError("fleet: the last line of \(outbox) is not an outbox row; move the file aside to start a new outbox")
            }
            fromOutbox = seq
        }
        return max(fromOutbox, readShipped()?.seq ?? 0)
    }

    /// How far the outbox was shipped, for `fleet` (another fleet's cursor does not count).
    struct Shipped: Sendable, Hashable {
        var fleet: String
        var seq: Int64
        var offset: Int64
    }

    func readShipped() -> Shipped? {
        guard let data = FileManager.default.contents(atPath: shipped), case .object(let members)? = try? JSONValue.parse(data),
            let fleet = members["fleet"]?.stringValue, let seq = members["seq"]?.integerValue, let offset = members["offset"]?.integerValue
        else { return nil }
        return Shipped(fleet: fleet, seq: seq, offset: offset)
    }

    func writeShipped(_ cursor: Shipped) throws(FleetError) {
        try replace(shipped, with: .object(["fleet": .string(cursor.fleet), "seq": .integer(cursor.seq), "offset": .integer(cursor.offset)]))
    }

    /// The last seq learned from each source, for `fleet`.
    func readTail(fleet: String) -> [String: Int64] {
        guard let data = FileManager.default.contents(atPath: tail), case .object(let members)? = try? JSONValue.parse(data),
            members["fleet"]?.stringValue == fleet, let sources = members["sources"]?.objectValue
        else { return [:] }
        return sources.compactMapValues(\.integerValue)
    }

    func writeTail(fleet: String, _ sources: [String: Int64]) throws(FleetError) {
        try replace(tail, with: .object(["fleet": .string(fleet), "sources": .object(sources.mapValues { .integer($0) })]))
    }

    private func replace(_ path: String, with value: JSONValue) throws(FleetError) {
        let temporary = path + ".tmp"
        do {
            try Data((value.text + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
            chmod(temporary, 0o600)
            guard rename(temporary, path) == 0 else { throw FleetError("rename: \(String(cString: strerror(errno)))") }
        } catch {
            throw FleetError("fleet: cannot write \(path): \(error)")
        }
    }
}
