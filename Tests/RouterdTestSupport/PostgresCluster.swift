import Foundation
import Glibc

/// A throwaway PostgreSQL server for one test: `initdb` into a temporary folder, `pg_ctl start` on
/// a free loopback port, removed at the end. Debian's `postgresql` package provides the programs
/// (.ci/run installs it). PostgreSQL refuses to run as root, so under root the cluster belongs to
/// the `postgres` user that package creates, and its programs run through `runuser`.
public final class PostgresCluster {
    public static let user = "routerd"
    public let password = "fleet-test-\(UInt32.random(in: 0...UInt32.max))"
    public let port: Int
    public let folder: TemporaryDirectory
    private let data: String

    /// The newest installed server's programs, or nil.
    public static let binaries: String? = {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.last.map { "\(root)/\($0)/bin" }.flatMap { FileManager.default.isExecutableFile(atPath: $0 + "/initdb") ? $0 : nil }
    }()

    static var runsAsPostgres: Bool { getuid() == 0 }

    /// Creates and starts the cluster.
    public init() throws {
        guard let binaries = Self.binaries else { throw HarnessError("PostgreSQL's server programs are not installed (apt-get install postgresql)") }
        folder = try TemporaryDirectory()
        data = folder.path + "/data"
        port = try Self.freePort()
        let passwordFile = try folder.write("pwfile", password + "\n")
        if Self.runsAsPostgres {
            guard let account = getpwnam("postgres") else { throw HarnessError("no user postgres to run the server as") }
            for path in [folder.path, passwordFile] { chown(path, account.pointee.pw_uid, account.pointee.pw_gid) }
        }
        let initdb = try run(
            binaries + "/initdb", ["-D", data, "-U", Self.user, "-A", "scram-sha-256", "--pwfile", passwordFile, "--no-sync", "-E", "UTF8"])
        guard initdb.status == 0 else { throw HarnessError("initdb failed: \(initdb.stderr)") }
        try start()
    }

    deinit {
        _ = try? stop()
    }

    /// A URL without the password (routerd reads that from a file or the environment).
    public var url: String { "postgresql://\(Self.user)@127.0.0.1:\(port)/postgres" }

    /// Starts the server (again, after ``stop()``), and waits until it accepts connections.
    public func start() throws {
        let options = "-p \(port) -k \(folder.path) -c listen_addresses=127.0.0.1 -c fsync=off"
        // Foundation's Process learns that its child exited when a socket it hands the child
        // closes (swift-corelibs-foundation#4795); a server started from that child inherits the
        // socket and would keep it open for its whole life. So the command that starts the server
        // runs under a shell that stays the child, and pg_ctl under a bash that first closes
        // every inherited descriptor past standard error.
        let closeAndExec = #"for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done; exec "$@""#
        let pgCtl = [
            "/bin/bash", "-c", closeAndExec, "bash", Self.binaries! + "/pg_ctl", "-D", data, "-o", options, "-l", folder.path + "/server.log",
            "-w", "-t", "60", "start",
        ]
        let inner = Self.runsAsPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--"] + pgCtl : pgCtl
        let result = try runCommand("/bin/sh", ["-c", #""$@"; exit $?"#, "sh"] + inner)
        guard result.status == 0 else {
            let log = (try? String(contentsOfFile: folder.path + "/server.log", encoding: .utf8)) ?? ""
            throw HarnessError("pg_ctl start failed: \(result.stderr)\n\(log)")
        }
    }

    /// Stops the server at once (`-m immediate`, as a crash or a lost host would).
    @discardableResult
    public func stop() throws -> Int32 {
        try run(Self.binaries! + "/pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).status
    }

    /// Runs `sql` with psql and returns its unaligned output.
    public func query(_ sql: String) throws -> String {
        let result = try runCommand(
            "/usr/bin/psql", ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql], environment: ["PGPASSWORD": password])
        guard result.status == 0 else { throw HarnessError("psql: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        if Self.runsAsPostgres { return try runCommand("/usr/sbin/runuser", ["-u", "postgres", "--", program] + arguments) }
        return try runCommand(program, arguments)
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw HarnessError("no free port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

extension Requirement {
    /// PostgreSQL's server programs (Debian's `postgresql`), and under root the `postgres` user and runuser.
    public static let postgres = Requirement(
        isMet: PostgresCluster.binaries != nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/psql")
            && (getuid() != 0 || (getpwnam("postgres") != nil && FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser"))),
        reason: "needs PostgreSQL's server programs (apt-get install postgresql), which .ci/run installs")
}
