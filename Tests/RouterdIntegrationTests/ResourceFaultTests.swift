import Foundation
import RouterdTestSupport
import Testing

/// Faults of the machine rather than of the input.
@Suite(.timeLimit(.minutes(10))) struct ResourceFaultTests {
    /// CPU seconds (user + system) the process has used, from /proc.
    static func cpuSeconds(_ pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th of them.
        let fields = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
        return (Double(fields[11])! + Double(fields[12])!) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// With its descriptors used up by a connection storm, routerd neither crashes nor spins on
    /// the accept it cannot complete: waiting clients are served once descriptors free up.
    @Test func runningOutOfDescriptorsNeitherCrashesNorSpins() throws {
        let daemon = try Daemon(launcher: ["/usr/bin/prlimit", "--nofile=64", "--"])
        var storm: [LineSocket] = []
        // More connections than descriptors: the last ones wait in the listen backlog. They come
        // one at a time, so that the accept that first finds no descriptor is the first of its
        // event-loop turn: the case NIO's own back-off misses, where routerd spun on every run
        // (connections arriving together only sometimes end a turn that way).
        for _ in 0..<100 {
            storm.append(try LineSocket(path: daemon.socket))
            Thread.sleep(forTimeInterval: 0.01)
        }
        // Let it accept what its descriptors allow first: on a loaded machine that work could
        // otherwise fall into the window below and look like spinning (0.48 s was seen in CI, with
        // the whole suite running beside it; 0.08 s alone).
        let descriptors = "/proc/\(daemon.process.processIdentifier)/fd"
        var counts: [Int] = []
        let settle = Date().addingTimeInterval(10)
        while Date() < settle {
            counts.append((try? FileManager.default.contentsOfDirectory(atPath: descriptors).count) ?? -1)
            if counts.count >= 4, Set(counts.suffix(4)).count == 1 { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        // Spinning burns every window; work deferred on a starved machine (accepting the storm,
        // seen as 0.33–0.48 s in one window with the suite running beside it, and in three
        // windows running once in a clean-clone CI run) burns some. So the quietest of up to six
        // windows (3 s) must be idle.
        var windows: [Double] = []
        for _ in 0..<6 {
            let before = try Self.cpuSeconds(daemon.process.processIdentifier)
            Thread.sleep(forTimeInterval: 0.5)
            windows.append(try Self.cpuSeconds(daemon.process.processIdentifier) - before)
            if windows.last! < 0.2 { break }
        }
        print("idle CPU with a full accept queue, per 0.5 s window: \(windows) s")
        #expect(windows.min()! < 0.2, "routerd used \(windows) s of CPU in each 0.5 s with nothing to do but a full accept queue")
        #expect(daemon.process.isRunning)
        #expect(daemon.log.contains("cannot accept a connection"), "the operator is told why clients wait:\n\(daemon.log)")
        // Free the descriptors: a waiting client and a new one are both answered.
        let waiting = try #require(storm.last)
        for socket in storm.dropLast() { socket.close() }
        storm.removeAll(keepingCapacity: false)
        #expect(try waiting.request(#"{"op":"health"}"#).ok)
        #expect(try daemon.connect().request(#"{"op":"health"}"#).ok)
    }
}
