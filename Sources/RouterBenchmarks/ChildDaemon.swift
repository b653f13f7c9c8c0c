import Foundation
import RouterConfig
import RouterPluginHost

/// The executable named `name` in the running executable's folder (routerd beside routerctl).
public func siblingExecutable(_ name: String) -> String {
    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent(name).path
}

/// Resident memory of a process (`self` or a pid), in KiB, from /proc: now (VmRSS), or its peak (VmHWM).
public func residentKiB(of process: String = "self", field: String = "VmRSS:") -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(process)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) })
    else { return nil }
    return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
}

/// The config `file` as the routerd at `routerd` would load it (its plugin libraries beside it),
/// or an error naming the file's problems.
public func loadDaemonConfig(_ file: String, routerd: String) throws(BenchmarkRunError) -> DaemonConfig {
    do throws(ConfigError) {
        return try ConfigLoader.load(
            file: file, hostABIVersion: Int(PluginLibrary.hostABIVersion), executableDirectory: (routerd as NSString).deletingLastPathComponent)
    } catch {
        throw BenchmarkRunError("--config \(file): \(error.issues.map(\.description).joined(separator: "; "))")
    }
}

/// A routerd that a run starts for itself (the soak, the learning benchmark) and stops when done.
public final class ChildDaemon: Sendable {
    private let process: Process
    public let pid: Int32

    /// Starts `binary` on `config` (with `arguments` after it) and waits until its socket file
    /// appears. Its standard error goes to `log`, shown if it does not start; without one it is discarded.
    public init(binary: String, config: String, socket: String, log: String?, arguments: [String] = []) throws {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw BenchmarkRunError("no routerd at \(binary); build it (`swift build`) or pass --routerd")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config", config] + arguments
        if let log {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        } else {
            process.standardError = FileHandle.nullDevice
        }
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        self.process = process
        pid = process.processIdentifier
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: socket) {
            guard process.isRunning, Date() < deadline else {
                let text = log.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
                throw BenchmarkRunError(
                    "routerd did not start on \(socket): "
                        + (text.map { "\n\($0.suffix(4000))" } ?? "run `routerd --check-config --config \(config)`"))
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    public var isRunning: Bool { process.isRunning }

    /// Resident memory now, in KiB.
    public var residentKiB: Int? { RouterBenchmarks.residentKiB(of: String(pid)) }

    /// The most resident memory since start or since ``resetPeak()``, in KiB (VmHWM).
    public var peakResidentKiB: Int? { RouterBenchmarks.residentKiB(of: String(pid), field: "VmHWM:") }

    /// Resets the peak to the resident memory now (Linux's `clear_refs` 5), so the next peak is one
    /// request's. False where the kernel does not allow it.
    @discardableResult public func resetPeak() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/\(pid)/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }

    /// Stops routerd with SIGTERM, waits for it, and returns its exit status (nil if a signal ended it).
    @discardableResult public func stop() -> Int32? {
        if process.isRunning {
            kill(pid, SIGTERM)
            process.waitUntilExit()
        }
        return process.terminationReason == .exit ? process.terminationStatus : nil
    }
}
