import Foundation
import RouterProtocol
import Synchronization
import Testing

// Every suite sets `.timeLimit(.minutes(10))`: a guard against a hang, not a speed check, so a slow
// or busy machine does not fail the suite (docs/RELIABILITY.md says why 5 minutes was too few).

/// Paths of the package under test.
public enum Package {
    /// The repository root (this file is Tests/RouterdTestSupport/Harness.swift).
    /// The sanitizer the suite runs under (`make test-asan` and `make test-tsan` set it), or nil.
    public static let sanitizer = ProcessInfo.processInfo.environment["ROUTERD_TEST_SANITIZER"].flatMap { $0.isEmpty ? nil : $0 }
    public static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The folder with the built products: next to the test binary, unless ROUTERD_BIN_DIR says otherwise.
    public static let binDirectory: String = {
        if let dir = ProcessInfo.processInfo.environment["ROUTERD_BIN_DIR"], !dir.isEmpty { return dir }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var folder = (exe as NSString).deletingLastPathComponent
        // swift test runs <bin>/llm-routerPackageTests.xctest; it may be a bundle folder on some platforms.
        if folder.hasSuffix(".xctest") { folder = (folder as NSString).deletingLastPathComponent }
        return folder
    }()

    public static func binary(_ name: String) throws -> String {
        let path = binDirectory + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw HarnessError("\(path) is missing; build the package first (`swift build --build-tests`, as `make test` does)")
        }
        return path
    }
}

public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A temporary folder, removed when the test ends.
public final class TemporaryDirectory {
    public let path: String

    public init() throws {
        var template = Array((NSTemporaryDirectory() + "routerd-test-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError("mkdtemp failed") }
        path = String(cString: made)
        chmod(path, 0o755)  // so a test client running as another user can reach the socket
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    public func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}

/// Writes routerd configs for tests.
public enum TestConfig {
    public static let strong = "gpt-4-1106-preview"
    public static let weak = "mistralai/Mixtral-8x7B-Instruct-v0.1"

    public static func yaml(
        socket: String, routers: String? = nil, limits: String = "  idle_timeout: 30", admin: String = "",
        searchPaths: [String] = [Package.root + "/plugins"],
        mode: String = "0660", encoders: String = "", models: String = "", extra: String = ""
    ) -> String {
        """
        socket:
          path: \(socket)
          mode: \(mode)
        \(admin)
        plugins:
          search_paths: [\(searchPaths.joined(separator: ", "))]
        limits:
        \(limits)
        logging:
          level: info
        \(encoders)
        \(models)
        \(extra)
        routers:
        \(routers ?? randomRouter())
        """
    }

    /// A `models:` catalogue of three priced models, cheap to dear, plus the strong and weak pair.
    public static let catalogue = """
        models:
          cheap: {input: 0.1, output: 0.2, output_tokens: 100}
          middle: {input: 1.0, output: 2.0, output_tokens: 100, aliases: [mid]}
          dear: {input: 10.0, output: 30.0, output_tokens: 100}
          \(strong): {input: 10.0, output: 30.0}
          \(weak): {input: 0.6, output: 0.6}
        """

    public static func randomRouter(name: String = "random", threshold: Double = 0.5, seed: Int? = 7) -> String {
        """
          \(name):
            plugin: random
            threshold: \(threshold)
            strong_model: \(strong)
            weak_model: \(weak)
        \(seed.map { "    params:\n      seed: \($0)" } ?? "")
        """
    }
}

/// A running routerd process on a temporary socket.
public final class Daemon {
    public let directory: TemporaryDirectory
    public let socket: String
    public let configFile: String
    public let process = Process()
    /// routerd's standard error goes to a file, read back by `log`.
    private let logFile: String

    /// Starts routerd on `config` (a function of the socket path) and waits until it accepts connections.
    public init(
        directory: TemporaryDirectory? = nil, config: (String) -> String = { TestConfig.yaml(socket: $0) }, arguments: [String] = [],
        launcher: [String] = [],
        environment: [String: String] = [:]
    ) throws {
        self.directory = try directory ?? TemporaryDirectory()
        socket = self.directory.path + "/routerd.sock"
        configFile = try self.directory.write("routerd.yaml", config(socket))
        // A launcher that execs its command (prlimit, setpriv) keeps routerd's pid.
        let command = launcher + [try Package.binary("routerd"), "--config", configFile] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "LISTEN_FDS")
        env.removeValue(forKey: "LISTEN_PID")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        logFile = self.directory.path + "/routerd.log"
        _ = FileManager.default.createFile(atPath: logFile, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: logFile)
        process.standardOutput = FileHandle.nullDevice
        try launch(process)
        launched = true
        try waitUntilServing()
    }

    /// What routerd wrote to standard error so far.
    public var log: String {
        String(decoding: FileManager.default.contents(atPath: logFile) ?? Data(), as: UTF8.self)
    }

    private func waitUntilServing() throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if !process.isRunning {
                throw HarnessError("routerd exited with status \(process.terminationStatus) before serving:\n\(log)")
            }
            if let connection = try? LineSocket(path: socket) {
                connection.close()
                return
            }
            usleep(20_000)
        }
        throw HarnessError("routerd did not start serving \(socket) within 20 s:\n\(log)")
    }

    public func connect() throws -> LineSocket {
        let connection = try LineSocket(path: socket)
        // If the daemon closes this connection unexpectedly, the failure shows the daemon's log.
        let logFile = self.logFile
        connection.diagnostics = { String(decoding: FileManager.default.contents(atPath: logFile) ?? Data(), as: UTF8.self) }
        return connection
    }

    /// Set when the test itself stops the daemon.
    private var stoppedByTest = false
    /// Set once routerd started; Foundation traps on the exit status of a process that never ran.
    private var launched = false

    /// Sends SIGTERM and waits for the exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        stoppedByTest = true
        if process.isRunning {
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        } else if launched, !stoppedByTest {
            // The daemon died on its own: show why, since its folder is about to be removed.
            print(
                "routerd (pid \(process.processIdentifier)) exited unexpectedly with status \(process.terminationStatus); its log:\n\(log)"
            )
        }
    }
}

/// A blocking Unix-socket client that speaks raw lines, so tests control every byte.
public final class LineSocket {
    public let fd: Int32
    private var buffer: [UInt8] = []
    /// What to add to an error when the other side closes the connection unexpectedly.
    public var diagnostics: (() -> String)?

    public init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket() failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            // No close here: every stored property is set, so throwing runs deinit, which closes
            // `fd`. Closing it here too closed whatever descriptor another test thread had opened
            // under the same number in between (seen as EBADF in unrelated tests).
            throw HarnessError("connect(\(path)): \(String(cString: strerror(errno)))")
        }
    }

    deinit { Glibc.close(fd) }

    public func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Stops sending; the daemon still answers what it received.
    public func finishSending() { shutdown(fd, Int32(SHUT_WR)) }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            // The test process starts many children; a SIGCHLD may interrupt the call.
            if written < 0, errno == EINTR { continue }
            guard written > 0 else { throw HarnessError("send failed: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    /// Reads one line (without its newline), or nil at end of stream.
    public func readLine(timeout: Double = 10) throws -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw HarnessError("no complete line within \(timeout) s (have \(buffer.count) bytes)") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(remaining * 1000)) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = recv(fd, &chunk, chunk.count, 0)
            // Only a real end of stream ends the line; an interrupted call (EINTR, from the
            // children this test process starts) is retried.
            if count < 0, errno == EINTR || errno == EAGAIN { continue }
            if count < 0 { throw HarnessError("recv failed: \(String(cString: strerror(errno)))") }
            if count == 0 { return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self).also { buffer.removeAll() } }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    /// Sends one `route` line and decodes the decision exactly. (JSONSerialization
    /// on Linux may misread the last digit of a double; JSONDecoder does not.)
    public func decision(_ line: String, timeout: Double = 10) throws -> Decision {
        try send(line + "\n")
        guard let response = try readLine(timeout: timeout) else { throw HarnessError("connection closed before a response to \(line)") }
        return try ResponseCodec.decode(Decision.self, from: Data(response.utf8))
    }

    /// Sends one line and returns the parsed response object.
    public func request(_ line: String, timeout: Double = 10) throws -> [String: Any] {
        try send(line + "\n")
        guard let response = try readLine(timeout: timeout) else {
            throw HarnessError("connection closed before a response to \(line)" + (diagnostics.map { "; routerd's log:\n" + $0() } ?? ""))
        }
        return try JSON.object(response)
    }
}

public enum JSON {
    public static func object(_ line: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw HarnessError("response is not a JSON object: \(line)")
        }
        return object
    }
}

extension String {
    fileprivate func also(_ body: () -> Void) -> String {
        body()
        return self
    }
}

extension Dictionary where Key == String, Value == Any {
    public var ok: Bool { self["ok"] as? Bool == true }
    public var errorCode: String? { (self["error"] as? [String: Any])?["code"] as? String }
    public var errorMessage: String { (self["error"] as? [String: Any])?["message"] as? String ?? "" }
    public var result: [String: Any] { self["result"] as? [String: Any] ?? [:] }
}

/// Runs a command to completion and returns its exit status and output.
@discardableResult
public func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, stdout: String, stderr: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    process.environment = env
    // Output goes to files, so a chatty child can never block on a full pipe.
    let outFile = NSTemporaryDirectory() + "routerd-test-out-\(UUID().uuidString)"
    let errFile = outFile + ".err"
    _ = FileManager.default.createFile(atPath: outFile, contents: nil)
    _ = FileManager.default.createFile(atPath: errFile, contents: nil)
    defer {
        unlink(outFile)
        unlink(errFile)
    }
    process.standardOutput = FileHandle(forWritingAtPath: outFile)
    process.standardError = FileHandle(forWritingAtPath: errFile)
    process.standardInput = FileHandle.nullDevice
    try launch(process)
    process.waitUntilExit()
    let outData = FileManager.default.contents(atPath: outFile) ?? Data()
    let errData = FileManager.default.contents(atPath: errFile) ?? Data()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// Waits for an event a test can only observe by asking: checks `condition` until it
/// holds or `seconds` pass, and returns whether it held. The wait ends as soon as the
/// event happens, so a fast machine is not slowed and a slow one is given time.
@discardableResult
public func eventually(within seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while try !condition() {
        guard Date() < deadline else { return false }
        usleep(10_000)
    }
    return true
}

/// Launches one process at a time: Foundation's Process on Linux is not robust when many
/// threads launch processes at once, as a parallel test run does.
private let launchLock = Mutex(())

public func launch(_ process: Process) throws {
    try launchLock.withLock { _ in try process.run() }
}

extension Decision {
    /// P(strong wins) of a threshold-policy decision; NaN, which fails every comparison, when a cost policy decided.
    public var strongScore: Double { score ?? .nan }
}
