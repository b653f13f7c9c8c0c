import CLibPQ
import Foundation

/// A PostgreSQL operation that failed, with the server's or libpq's own words.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The server could not be reached, or refused the login.
        case connect
        /// A statement failed; the connection is still usable.
        case statement
        /// The connection broke; a new one is needed.
        case connectionLost
    }

    public var kind: Kind
    public var message: String
    /// The server's SQLSTATE code, when it sent one (42501: insufficient privilege).
    public var sqlState: String?

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }
}

/// One connection through libpq, PostgreSQL's own client library (Debian's `libpq-dev`): it parses
/// the URL, negotiates TLS as the URL's `sslmode` asks, authenticates (SCRAM included) and follows a
/// multi-host URL to the primary (`target_session_attrs=read-write`), as every other PostgreSQL
/// client an operator runs does.
///
/// Blocking, and owned by one thread at a time: the fleet's shipper and tailer each own one, on
/// threads of their own, so no event loop or cooperative thread ever waits on the database.
final class PostgresConnection {
    private let connection: OpaquePointer

    /// Connects to `url` (a `postgresql://` URL or a `key=value` string), with `password` if the
    /// URL does not carry one; gives up after `timeout` seconds.
    init(url: String, password: String?, applicationName: String, timeout: Int) throws(PostgresError) {
        var pairs: [(String, String)] = [
            ("dbname", url), ("application_name", applicationName), ("connect_timeout", String(max(2, timeout))),
        ]
        if let password { pairs.append(("password", password)) }
        let keywords = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            keywords.forEach { free($0) }
            values.forEach { free($0) }
        }
        let keywordPointers = keywords.map { UnsafePointer($0) } + [nil]
        let valuePointers = values.map { UnsafePointer($0) } + [nil]
        // expand_dbname = 1: the dbname value is parsed as a URL or connection string.
        guard let connection = PQconnectdbParams(keywordPointers, valuePointers, 1) else {
            throw PostgresError(.connect, "libpq could not allocate a connection")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.text(PQerrorMessage(connection))
            PQfinish(connection)
            throw PostgresError(.connect, "cannot connect to PostgreSQL: \(message)")
        }
        // libpq prints the server's notices to standard error, that is routerd's journal; the only
        // ones routerd's statements raise are "already exists, skipping" from its IF NOT EXISTS.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        self.connection = connection
    }

    deinit { PQfinish(connection) }

    /// Runs one statement with text parameters (`$1`, `$2`, …; nil is SQL NULL) and returns its
    /// rows as text (nil for NULL).
    @discardableResult
    func execute(_ sql: String, _ parameters: [String?] = []) throws(PostgresError) -> [[String?]] {
        let copies = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { UnsafePointer($0) }
        let result = pointers.withUnsafeBufferPointer { buffer in
            PQexecParams(connection, sql, Int32(parameters.count), nil, buffer.baseAddress, nil, nil, 0)
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK else {
            let message = result.map { Self.text(PQresultErrorMessage($0)) } ?? Self.text(PQerrorMessage(connection))
            let sqlState = result.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "C"))) }.map { String(cString: $0) }
            throw PostgresError(PQstatus(connection) == CONNECTION_OK ? .statement : .connectionLost, message, sqlState: sqlState)
        }
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        var rows: [[String?]] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            rows.append(
                (0..<columnCount).map { column in
                    PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
                })
        }
        return rows
    }

    /// Waits up to `timeout` seconds for a NOTIFY on a channel this connection LISTENs to, or for
    /// `wake` (a pipe's read end) to become readable; true if a notification arrived.
    /// Notifications carry nothing the caller needs: they only wake it.
    func waitForNotification(timeout: Double, wake: Int32) throws(PostgresError) -> Bool {
        if drainNotifications() { return true }
        var pollers = [pollfd(fd: PQsocket(connection), events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        let ready = poll(&pollers, 2, Int32(max(0, timeout) * 1000))
        if ready < 0, errno != EINTR {
            throw PostgresError(.connectionLost, "waiting for PostgreSQL: \(String(cString: strerror(errno)))")
        }
        guard ready > 0, pollers[0].revents != 0 else { return false }
        guard PQconsumeInput(connection) == 1 else {
            throw PostgresError(.connectionLost, "PostgreSQL connection lost: \(Self.text(PQerrorMessage(connection)))")
        }
        return drainNotifications()
    }

    private func drainNotifications() -> Bool {
        var any = false
        while let notification = PQnotifies(connection) {
            any = true
            PQfreemem(notification)
        }
        return any
    }

    /// libpq's messages end with a newline.
    private static func text(_ pointer: UnsafePointer<CChar>?) -> String {
        pointer.map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "unknown error"
    }
}
