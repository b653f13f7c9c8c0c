import Foundation
import RouterProtocol
import RouterdTestSupport
import Testing

/// The decision log and the Prometheus endpoint.
@Suite(.timeLimit(.minutes(10))) struct ObservabilityTests {
    /// A full disk: /dev/full fails every write with ENOSPC. Routing goes on, every lost line is
    /// counted, and the failure is logged at most once a second rather than once per decision.
    @Test func aFullDiskCostsLogLinesNotDecisions() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0) + "\ndecision_log:\n  path: /dev/full\n" })
        let connection = try daemon.connect()
        let start = Date()
        for index in 0..<30 {
            #expect(try connection.request(#"{"op":"route","router":"random","prompt":"p\#(index)"}"#).ok)
        }
        let elapsed = Date().timeIntervalSince(start)
        let stats = try connection.request(#"{"op":"stats"}"#).result
        let log = try #require(stats["decision_log"] as? [String: Any])
        #expect(log["failed_writes"] as? Int == 30 && log["lines"] as? Int == 0)
        #expect((stats["routers"] as? [String: [String: Any]])?["random"]?["decisions"] as? Int == 30)
        let warnings = daemon.log.components(separatedBy: "decision log write failed").count - 1
        #expect(warnings >= 1 && warnings <= Int(elapsed) + 1, "\(warnings) warnings in \(elapsed) s")
        #expect(daemon.log.contains("No space left on device"))
    }

    /// A disk that fills up and then frees space: routerd runs in a mount namespace of its own on
    /// a 128 KiB tmpfs holding its decision log and feedback store (unshare and mount need root;
    /// otherwise the test is skipped). The test fills the tmpfs through /proc/<pid>/root. Routing
    /// goes on while log lines are lost and counted; feedback is refused with
    /// `feedback_unavailable` and nothing half-written stays behind. Once the filler is removed,
    /// both resume by themselves, and every acknowledged feedback row is on disk.
    @Test(.requires(.root))
    func aFullDiskCostsLogLinesAndFeedbackUntilSpaceReturns() throws {
        let directory = try TemporaryDirectory()
        let mountPoint = directory.path + "/disk"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        // unshare and sh exec in place, so the pid the test holds is routerd's.
        let launcher = ["/usr/bin/unshare", "-m", "/bin/sh", "-c", "mount -t tmpfs -o size=128k tmpfs \"$0\" && exec \"$@\"", mountPoint]
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(socket: $0)
                    + "\ndecision_log:\n  path: \(mountPoint)/decisions.jsonl\n  include_prompt: true\nfeedback:\n  directory: \(mountPoint)/feedback\n"
            },
            launcher: launcher)
        let connection = try daemon.connect()
        let inside = "/proc/\(daemon.process.processIdentifier)/root\(mountPoint)"
        // tmpfs hands out whole pages, so a short line may still fit in a file's last page on a full
        // disk: each prompt is longer than a page, and so is every line that carries it.
        let page = String(repeating: "x", count: 5000)
        func route(_ prompt: String) throws -> String {
            let reply = try connection.request(#"{"op":"route","router":"random","prompt":"\#(prompt) \#(page)"}"#)
            return try #require(reply.result["decision_id"] as? String)
        }
        func feedback(_ id: String) throws -> [String: Any] {
            try connection.request(
                #"{"op":"feedback","decision_id":"\#(id)","model":"\#(TestConfig.strong)","outcome":"win","against":"\#(TestConfig.weak)"}"#)
        }
        #expect(try feedback(try route("before")).ok)
        #expect(Self.lines(inside + "/decisions.jsonl").count == 1, "the log is on the daemon's tmpfs")
        // Fill the tmpfs to the last byte.
        let filler = inside + "/filler"
        _ = FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try #require(FileHandle(forWritingAtPath: filler))
        let block = Data(repeating: 0x61, count: 4096)
        while (try? handle.write(contentsOf: block)) != nil {}
        try? handle.close()
        for index in 0..<20 {
            let id = try route("full \(index)")
            if index % 5 == 0 {
                let refused = try feedback(id)
                #expect(refused.errorCode == "feedback_unavailable", "\(refused)")
            }
        }
        var stats = try connection.request(#"{"op":"stats"}"#).result
        var log = try #require(stats["decision_log"] as? [String: Any])
        #expect(log["failed_writes"] as? Int == 20 && log["lines"] as? Int == 1, "\(log)")
        #expect(daemon.log.contains("No space left on device"))
        // Space returns: the next decisions are logged and the next feedback recorded, whole lines only.
        try FileManager.default.removeItem(atPath: filler)
        for index in 0..<10 {
            let id = try route("after \(index)")
            if index % 5 == 0 { #expect(try feedback(id).ok) }
        }
        stats = try connection.request(#"{"op":"stats"}"#).result
        log = try #require(stats["decision_log"] as? [String: Any])
        #expect(log["failed_writes"] as? Int == 20 && log["lines"] as? Int == 11, "\(log)")
        for (file, count) in [("/decisions.jsonl", 11), ("/feedback/battles.jsonl", 3)] {
            let text = try String(contentsOfFile: inside + file, encoding: .utf8)
            #expect(
                Self.lines(inside + file).count == count && text.split(separator: "\n").count == count && text.hasSuffix("\n"), "\(file): \(text)")
        }
        #expect(daemon.log.contains("decision log writable again"))
    }

    static func lines(_ path: String) -> [[String: Any]] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSON.object(String($0)) }
    }

    /// A crash mid-write leaves a torn last line in the decision log. At start routerd cuts it
    /// off, so the next decision is a line of its own and every line is whole JSON (before, the
    /// next decision was joined onto the fragment).
    @Test func aTornLastLineOfTheDecisionLogIsCutOffAtStart() throws {
        let directory = try TemporaryDirectory()
        let log = try directory.write("decisions.jsonl", #"{"router":"random","tier":"weak"}"# + "\n" + #"{"router":"ran"#)
        let daemon = try Daemon(directory: directory, config: { TestConfig.yaml(socket: $0) + "\ndecision_log:\n  path: \(log)\n" })
        _ = try daemon.connect().decision(#"{"op":"route","router":"random","prompt":"after the crash"}"#)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(text.hasSuffix("\n") && lines.count == 2, "\(text)")
        #expect(lines.allSatisfy { (try? JSON.object(String($0))) != nil }, "every line is whole JSON: \(text)")
        #expect(Self.lines(log).last?["router"] as? String == "random")
    }

    @Test func everyDecisionIsLoggedWithAHashOfItsPrompt() throws {
        let directory = try TemporaryDirectory()
        let log = directory.path + "/decisions.jsonl"
        let daemon = try Daemon(directory: directory, config: { TestConfig.yaml(socket: $0) + "\ndecision_log:\n  path: \(log)\n" })
        let connection = try daemon.connect()
        var decisions: [Decision] = []
        for prompt in ["first secret prompt", "second secret prompt", "first secret prompt"] {
            decisions.append(try connection.decision(#"{"op":"route","router":"random","prompt":"\#(prompt)"}"#))
        }
        let logged = Self.lines(log)
        #expect(logged.count == 3)
        let stats = try #require(try connection.request(#"{"op":"stats"}"#).result["decision_log"] as? [String: Any])
        #expect(stats["lines"] as? Int == 3 && stats["failed_writes"] as? Int == 0 && stats["path"] as? String == log)
        for (entry, decision) in zip(logged, decisions) {
            #expect(entry["router"] as? String == "random")
            // Foundation's JSONSerialization may misread a double's last digit on Linux.
            #expect(abs((entry["score"] as? Double ?? -1) - decision.strongScore) < 1e-12)
            #expect(entry["threshold"] as? Double == 0.5)
            #expect(entry["tier"] as? String == decision.tier?.rawValue)
            #expect(entry["generation"] as? Int == 1)
            // The log names the decision's fields as the `route` reply does.
            #expect(entry["elapsed_us"] is Double)
            #expect(entry["latency_us"] == nil)
            #expect((entry["time"] as? Double ?? 0) > 1_700_000_000)
            #expect(entry["prompt"] == nil)
        }
        // The same prompt, the same hash; the text itself is nowhere in the file.
        #expect(logged[0]["prompt_hash"] as? String == logged[2]["prompt_hash"] as? String)
        #expect(logged[0]["prompt_hash"] as? String != logged[1]["prompt_hash"] as? String)
        #expect(!(try String(contentsOfFile: log, encoding: .utf8)).contains("secret"))

        // logrotate's way: move the file, then SIGUSR1 makes routerd start a new one.
        #expect(rename(log, log + ".old") == 0)
        kill(daemon.process.processIdentifier, SIGUSR1)
        #expect(eventually { FileManager.default.fileExists(atPath: log) })
        _ = try connection.decision(#"{"op":"route","router":"random","prompt":"after rotation"}"#)
        #expect(Self.lines(log).count == 1)
        #expect(Self.lines(log + ".old").count == 3)
    }

    @Test func theLogCanHoldPromptsAndRotateBySize() throws {
        let directory = try TemporaryDirectory()
        let log = directory.path + "/decisions.jsonl"
        let daemon = try Daemon(
            directory: directory,
            config: { TestConfig.yaml(socket: $0) + "\ndecision_log:\n  path: \(log)\n  include_prompt: true\n  max_bytes: 1000\n" })
        let connection = try daemon.connect()
        for index in 0..<20 { _ = try connection.decision(#"{"op":"route","router":"random","prompt":"prompt number \#(index)"}"#) }
        let rotated = Self.lines(log + ".1")
        #expect(!rotated.isEmpty)
        #expect(rotated.first?["prompt"] as? String != nil)
        let current = try FileManager.default.attributesOfItem(atPath: log)[.size] as? Int ?? .max
        #expect(current < 1000)
        // The newest line is in the current file, or in .1 if it just rotated.
        let newest = Self.lines(log).last ?? rotated.last
        #expect(newest?["prompt"] as? String == "prompt number 19")
    }

    @Test func anUnwritableLogPathIsRejectedAtLoad() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock") + "\ndecision_log:\n  path: /nonexistent/folder/d.jsonl\n")
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("decision_log: cannot open /nonexistent/folder/d.jsonl"), "\(check.stderr)")
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A plain HTTP/1.1 GET over a loopback TCP socket: status and body.
    static func get(port: Int, path: String) throws -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw HarnessError("connect 127.0.0.1:\(port): \(String(cString: strerror(errno)))") }
        // Never wait forever: a reply that does not end fails the test instead of hanging it.
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count < 0, errno == EINTR { continue }
            if count < 0 { throw HarnessError("no complete reply from 127.0.0.1:\(port) within 5 s") }
            guard count > 0 else { break }
            reply += chunk[..<count]
        }
        let text = String(decoding: reply, as: UTF8.self)
        guard let headerEnd = text.range(of: "\r\n\r\n"), let status = Int(text.split(separator: " ").dropFirst().first ?? "") else {
            throw HarnessError("not an HTTP reply: \(text.prefix(100))")
        }
        return (status, String(text[headerEnd.upperBound...]))
    }

    @Test func prometheusMetricsAreServedOnLoopback() throws {
        let port = Self.freePort()
        let budget = """
              budget:
                plugin: random
                policy: {budget: {share: 0.5, model: dear, window: 10}}
                candidates: [cheap, dear]
                params:
                  seed: 3
            """
        let daemon = try Daemon(config: {
            TestConfig.yaml(socket: $0, routers: TestConfig.randomRouter() + "\n" + budget, models: TestConfig.catalogue)
                + "\nmetrics:\n  listen: 127.0.0.1:\(port)\n"
        })
        let connection = try daemon.connect()
        var strong = 0
        for index in 0..<10 {
            if try connection.decision(#"{"op":"route","router":"random","prompt":"p\#(index)"}"#).tier == .strong { strong += 1 }
        }
        var dear = 0
        for index in 0..<20 {
            let decision = try connection.decision(#"{"op":"route","router":"budget","prompt":"b\#(index)","session":"s\#(index % 4)"}"#)
            if decision.model == "dear" { dear += 1 }
        }
        var metrics = (status: 0, body: "")
        eventually {
            metrics = (try? Self.get(port: port, path: "/metrics")) ?? (0, "")
            return metrics.status == 200
        }
        #expect(metrics.status == 200, "routerd's log: \(daemon.log)")
        #expect(metrics.body.contains("# TYPE routerd_decisions_total counter"), "\(metrics.body)")
        #expect(metrics.body.contains(#"routerd_decisions_total{router="random",tier="strong"} \#(strong)"#), "\(metrics.body)")
        #expect(metrics.body.contains(#"routerd_decisions_total{router="random",tier="weak"} \#(10 - strong)"#))
        #expect(metrics.body.contains(#"routerd_router_threshold{router="random"} 0.5"#))
        #expect(metrics.body.contains("routerd_config_generation 1"))
        // Many models: decisions by model, a budget's target, achieved value and λ, the sessions.
        #expect(metrics.body.contains(#"routerd_model_decisions_total{router="budget",model="dear"} \#(dear)"#), "\(metrics.body)")
        #expect(metrics.body.contains(#"routerd_model_decisions_total{router="budget",model="cheap"} \#(20 - dear)"#))
        #expect(metrics.body.contains(#"routerd_budget_target{router="budget",metric="share"} 0.5"#))
        #expect(metrics.body.contains(#"routerd_budget_achieved{router="budget",metric="share"} "#))
        #expect(metrics.body.contains(#"routerd_budget_lambda{router="budget"} "#))
        #expect(metrics.body.contains("routerd_sessions_remembered 4"))
        #expect(try Self.get(port: port, path: "/other").status == 404)
    }

    @Test func metricsRefuseANonLoopbackAddress() throws {
        let directory = try TemporaryDirectory()
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/s.sock") + "\nmetrics:\n  listen: 0.0.0.0:9464\n")
        let check = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        #expect(check.status != 0)
        #expect(check.stderr.contains("metrics.listen must be a loopback address"), "\(check.stderr)")
    }

    /// A metrics port another process holds (any local user can take it before routerd starts, or
    /// during a `Restart=` window): routerd does not start half-deaf. It exits 1 at once, saying
    /// which address it could not bind, instead of serving without metrics and then ignoring
    /// SIGTERM (finding 2 of issue 23).
    @Test func aMetricsPortThatIsTakenFailsTheStartLoudly() throws {
        let directory = try TemporaryDirectory()
        let holder = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(holder) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(holder, 1) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(holder, $0, &length) } }
        let port = Int(UInt16(bigEndian: address.sin_port))
        let socketPath = directory.path + "/routerd.sock"
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: socketPath) + "\nmetrics:\n  listen: 127.0.0.1:\(port)\n")

        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Package.binary("routerd"))
        process.arguments = ["--config", config]
        let errors = directory.path + "/stderr"
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: errors)
        process.standardOutput = FileHandle.nullDevice
        try launch(process)
        let exited = eventually(within: 30) { !process.isRunning }
        if !exited {
            // The old failure: alive, not serving metrics, deaf to SIGTERM. Say so, then clean up.
            kill(process.processIdentifier, SIGTERM)
            let stoppedByTerm = eventually(within: 5) { !process.isRunning }
            if !stoppedByTerm { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            Issue.record("routerd kept running with its metrics port taken (SIGTERM \(stoppedByTerm ? "stopped" : "did not stop") it)")
            return
        }
        process.waitUntilExit()
        let text = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 1, "\(text)")
        #expect(text.contains("metrics") && text.contains("127.0.0.1:\(port)"), "the error names the address: \(text)")
        #expect(!FileManager.default.fileExists(atPath: socketPath), "a daemon that did not start leaves no socket behind")
    }
}
