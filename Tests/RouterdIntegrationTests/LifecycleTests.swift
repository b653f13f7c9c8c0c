import Foundation
import RouterdTestSupport
import Synchronization
import Testing

/// Start, stop, reload, systemd integration and access control.
@Suite(.timeLimit(.minutes(10))) struct LifecycleTests {
    @Test func sigtermAnswersWhatIsInFlightAndRemovesTheSocket() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        #expect(try connection.request(#"{"op":"health"}"#).ok)
        // A reload is answered from a thread pool; SIGTERM right behind it must not lose the reply.
        try connection.send(#"{"id":1,"op":"reload"}"# + "\n")
        // Let the daemon take the request first: a request it has not read yet is not in flight, and
        // a daemon shutting down rightly closes the connection on it. The reload logs as it ends;
        // its reply may or may not have been written when SIGTERM lands, and it must arrive.
        #expect(eventually { daemon.log.contains("reloaded") })
        kill(daemon.process.processIdentifier, SIGTERM)
        let reply = try JSON.object(try #require(try connection.readLine()))
        #expect(reply["id"] as? Int == 1)
        #expect(try connection.readLine() == nil, "then the connection is closed")
        #expect(daemon.stop() == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socket), "the socket file is removed")
        #expect(daemon.log.contains("stopped"))
    }

    @Test func aStaleSocketFileFromACrashedDaemonIsReplaced() throws {
        let directory = try TemporaryDirectory()
        let first = try Daemon(directory: directory)
        first.stop(signal: SIGKILL)  // a crash leaves the socket file behind
        #expect(FileManager.default.fileExists(atPath: first.socket))
        let second = try Daemon(directory: directory)
        #expect(try second.connect().request(#"{"op":"health"}"#).ok)
    }

    @Test func aSocketALiveDaemonServesIsRefused() throws {
        let daemon = try Daemon()
        let second = try runCommand(try Package.binary("routerd"), ["--config", daemon.configFile])
        #expect(second.status != 0)
        #expect(second.stderr.contains("another routerd is already serving \(daemon.socket)"), "\(second.stderr)")
        // The first daemon is untouched.
        #expect(try daemon.connect().request(#"{"op":"health"}"#).ok)
    }

    @Test func aPathThatIsNotASocketIsRefused() throws {
        let directory = try TemporaryDirectory()
        let socket = try directory.write("routerd.sock", "not a socket")
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: socket))
        let run = try runCommand(try Package.binary("routerd"), ["--config", config])
        #expect(run.status != 0)
        #expect(run.stderr.contains("exists and is not a socket"))
    }

    @Test func theSocketGetsTheConfiguredMode() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, mode: "0600") })
        let attributes = try FileManager.default.attributesOfItem(atPath: daemon.socket)
        #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o777 } == 0o600)
    }

    @Test(.requires(.actAsNobody)) func theSocketGetsTheConfiguredOwnerAndGroup() throws {
        let nobody = try OtherUser.nobody()
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, mode: "0640\n  owner: nobody\n  group: \(nobody.groupName)") })
        let attributes = try FileManager.default.attributesOfItem(atPath: daemon.socket)
        #expect((attributes[.ownerAccountID] as? NSNumber)?.uint32Value == nobody.uid)
        #expect((attributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value == nobody.gid)
        #expect((attributes[.posixPermissions] as? Int).map { $0 & 0o777 } == 0o640)
    }

    @Test func readinessAndStoppingAreNotifiedToSystemd() throws {
        let directory = try TemporaryDirectory()
        let notifyPath = directory.path + "/notify.sock"
        let notify = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(notify) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(notifyPath.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(notify, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0)
        let daemon = try Daemon(directory: directory, environment: ["NOTIFY_SOCKET": notifyPath])
        let ready = try Self.receive(notify)
        #expect(ready.contains("READY=1"), "\(ready)")
        kill(daemon.process.processIdentifier, SIGHUP)
        let reloading = try Self.receive(notify)
        #expect(reloading.contains("RELOADING=1"), "\(reloading)")
        #expect(try Self.receive(notify).contains("READY=1"))
        daemon.stop()
        #expect(try Self.receive(notify).contains("STOPPING=1"))
    }

    static func receive(_ fd: Int32) throws -> String {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        // Generous: the suite runs beside a descriptor storm, trainers and builds on a 2-core machine
        // (a CI run once waited over 30 s); the suite's time limit still bounds a real hang.
        let deadline = Date().addingTimeInterval(120)
        var ready: Int32 = 0
        // Retry calls a SIGCHLD (from this process's many children) interrupts.
        repeat {
            ready = poll(&poller, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000)))
        } while ready < 0 && errno == EINTR && Date() < deadline
        guard ready > 0 else { throw HarnessError("no notification within 120 s") }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var count = recv(fd, &buffer, buffer.count, 0)
        while count < 0 && errno == EINTR { count = recv(fd, &buffer, buffer.count, 0) }
        return String(decoding: buffer[..<max(0, count)], as: UTF8.self)
    }

    static let activate = "/usr/bin/systemd-socket-activate"

    @Test(.requires(.systemdTool(activate))) func anInheritedSocketFromSystemdIsServed() throws {
        let activate = Self.activate
        let directory = try TemporaryDirectory()
        let socketPath = directory.path + "/activated.sock"
        // The config names another path: with an inherited socket it must not be used.
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/unused.sock"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: activate)
        process.arguments = ["-l", socketPath, try Package.binary("routerd"), "--config", config]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try launch(process)
        defer {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        var connection: LineSocket?
        eventually {
            connection = try? LineSocket(path: socketPath)
            return connection != nil
        }
        let response = try #require(connection).request(#"{"op":"route","router":"random","prompt":"activated"}"#)
        #expect(response.ok)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/unused.sock"))
    }

    /// A plugin that crashes takes the daemon with it (it runs in its address space). Under socket
    /// activation the listening socket outlives the process and a restart serves again: clients
    /// that connect meanwhile wait in the backlog, none is refused. The supervisor here is a bash
    /// loop standing in for systemd's `Restart=on-failure` with `RestartSec=1s`.
    @Test(.requires(.systemdTool(activate))) func aCrashUnderSocketActivationDelaysClientsButRefusesNone() throws {
        let activate = Self.activate
        let directory = try TemporaryDirectory()
        let plugins = try PluginTests.buildConstantPlugin(in: directory, flags: ["-DFAULTS"])
        let socketPath = directory.path + "/activated.sock"
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/unused.sock", routers: PluginTests.constantRouter(), searchPaths: [plugins]))
        // Each start gets the inherited socket: LISTEN_PID must name the process that execs routerd.
        let loop = "while :; do (LISTEN_PID=$BASHPID exec \"$0\" --config \"$1\"); sleep 1; done"
        let supervisor = Process()
        supervisor.executableURL = URL(fileURLWithPath: activate)
        // systemd-socket-activate passes on only what -E names. No backtrace: a crash as quick as it gets.
        supervisor.arguments = [
            "-l", socketPath, "-E", "SWIFT_BACKTRACE=enable=no", "/bin/bash", "-c", loop, try Package.binary("routerd"), config,
        ]
        supervisor.standardError = FileHandle.nullDevice
        supervisor.standardOutput = FileHandle.nullDevice
        try launch(supervisor)
        var daemons: Set<Int32> = []
        func daemonPID() -> Int32? {
            (try? LineSocket(path: socketPath).request(#"{"op":"status"}"#).result["pid"] as? Int).map(Int32.init)
        }
        defer {
            kill(supervisor.processIdentifier, SIGKILL)
            supervisor.waitUntilExit()
            for pid in daemons { kill(pid, SIGKILL) }
            if let pid = daemonPID() { kill(pid, SIGKILL) }
        }
        #expect(eventually(within: 20) { daemonPID() != nil })
        let first = try #require(daemonPID())
        daemons.insert(first)

        // Clients keep asking while the daemon crashes and comes back.
        final class Traffic: Sendable {
            let refused = Mutex(0)
            let answered = Mutex<[Date]>([])
            let stop = Mutex(false)
            let stopped = Mutex(0)
        }
        let traffic = Traffic()
        let clients = (0..<4).map { _ in
            Thread {
                defer { traffic.stopped.withLock { $0 += 1 } }
                while !traffic.stop.withLock({ $0 }) {
                    do {
                        let connection = try LineSocket(path: socketPath)
                        if (try? connection.request(#"{"op":"route","router":"constant","prompt":"fine"}"#))?.ok == true {
                            traffic.answered.withLock { $0.append(Date()) }
                        }
                        connection.close()
                    } catch {
                        traffic.refused.withLock { $0 += 1 }  // connect() failed: the socket refused us
                    }
                    usleep(20_000)
                }
            }
        }
        for client in clients { client.start() }
        #expect(eventually { traffic.answered.withLock { $0.count } >= 4 }, "the clients are served before the crash")
        let crashedAt = Date()
        let victim = try LineSocket(path: socketPath)
        try victim.send(#"{"op":"route","router":"constant","prompt":"crash now"}"# + "\n")
        let last = try victim.readLine(timeout: 10)
        #expect(last == nil, "the crashing daemon closes the connection without an answer: \(last ?? "")")
        #expect(eventually(within: 30) { (daemonPID().map { $0 != first }) == true }, "a new daemon serves")
        if let second = daemonPID() { daemons.insert(second) }
        _ = eventually { traffic.answered.withLock { $0.contains { $0 > crashedAt.addingTimeInterval(0.5) } } }
        traffic.stop.withLock { $0 = true }
        #expect(eventually { traffic.stopped.withLock { $0 } == clients.count })
        let firstAfter = traffic.answered.withLock { $0.first { $0 > crashedAt.addingTimeInterval(0.5) } }
        let gap = firstAfter.map { $0.timeIntervalSince(crashedAt) }
        print(
            "crash under socket activation: \(traffic.refused.withLock { $0 }) refused connections; first answer \(gap.map { String(format: "%.2f s", $0) } ?? "none") after the crash (restart delay 1 s)"
        )
        #expect(traffic.refused.withLock { $0 } == 0, "no client was refused")
        #expect(gap != nil, "clients were answered after the restart")
    }

    @Test func reloadSwapsTheGenerationAndABrokenConfigKeepsTheOldOne() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        #expect(try connection.request(#"{"op":"route","router":"random","prompt":"x"}"#).result["generation"] as? Int == 1)

        // A new threshold and a second router instance.
        try TestConfig.yaml(socket: daemon.socket, routers: TestConfig.randomRouter(threshold: 0.9) + "\n" + TestConfig.randomRouter(name: "second"))
            .write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let reload = try connection.request(#"{"op":"reload"}"#)
        #expect(reload.ok, "\(reload)")
        #expect(reload.result["generation"] as? Int == 2)
        #expect(reload.result["previous_generation"] as? Int == 1)
        let decision = try connection.request(#"{"op":"route","router":"random","prompt":"x"}"#).result
        #expect(decision["generation"] as? Int == 2)
        #expect(decision["threshold"] as? Double == 0.9)
        #expect(try connection.request(#"{"op":"route","router":"second","prompt":"x"}"#).ok)

        // Broken YAML: rejected with its line, and generation 2 keeps serving.
        try "routers:\n  random: [unclosed\n".write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let broken = try connection.request(#"{"op":"reload"}"#)
        #expect(broken.errorCode == "reload_failed")
        #expect(broken.errorMessage.contains("routerd.yaml:3:"), "\(broken.errorMessage)")
        #expect(broken.errorMessage.contains("generation 2 keeps serving"))
        let after = try connection.request(#"{"op":"route","router":"second","prompt":"x"}"#)
        #expect(after.result["generation"] as? Int == 2)

        // SIGHUP reloads too, once the file is fixed.
        try TestConfig.yaml(socket: daemon.socket).write(toFile: daemon.configFile, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(try eventually { try connection.request(#"{"op":"status"}"#).result["generation"] as? Int == 3 })
        let stats = try connection.request(#"{"op":"stats"}"#).result
        #expect(stats["reloads"] as? Int == 2)
        #expect(stats["reload_failures"] as? Int == 1)
    }

    @Test(.requires(.actAsNobody)) func adminOpsAreForbiddenToOtherUsers() throws {
        let nobody = try OtherUser.nobody()
        let setpriv = Requirement.setprivPath
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, mode: "0666") })
        let asNobody = nobody.run(try Package.binary("routerctl"))
        let denied = try runCommand(setpriv, asNobody + ["reload", "--socket", daemon.socket, "--json"])
        #expect(denied.status != 0)
        let response = try JSON.object(denied.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(response.errorCode == "forbidden", "\(denied.stdout) \(denied.stderr)")
        #expect(response.errorMessage.contains("uid \(nobody.uid)"))
        // Query ops stay open to everyone who can connect.
        let route = try runCommand(setpriv, asNobody + ["route", "--socket", daemon.socket, "--router", "random", "hello"])
        #expect(route.status == 0, "\(route.stderr)")
        // Root may reload.
        #expect(try daemon.connect().request(#"{"op":"reload"}"#).ok)
    }

    @Test(.requires(.actAsNobody)) func listedAdminUidsMayReload() throws {
        let nobody = try OtherUser.nobody()
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, admin: "admin:\n  uids: [\(nobody.uid)]", mode: "0666") })
        let run = try runCommand(Requirement.setprivPath, nobody.run(try Package.binary("routerctl")) + ["reload", "--socket", daemon.socket])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("reloaded: generation 1 → 2"))
    }
}

@Suite(.timeLimit(.minutes(10))) struct SystemdUnitTests {
    /// systemd's own checker accepts the shipped units (pointed at this build's binary).
    static let analyze = "/usr/bin/systemd-analyze"

    @Test(.requires(.systemdTool(analyze))) func theShippedUnitsVerify() throws {
        let analyze = Self.analyze
        let directory = try TemporaryDirectory()
        let service = try String(contentsOfFile: Package.root + "/systemd/routerd.service", encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/routerd", with: try Package.binary("routerd"))
        let socket = try String(contentsOfFile: Package.root + "/systemd/routerd.socket", encoding: .utf8)
        let serviceFile = try directory.write("routerd.service", service)
        let socketFile = try directory.write("routerd.socket", socket)
        let verify = try runCommand(analyze, ["verify", socketFile, serviceFile])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(service.contains("Type=notify"))
        #expect(service.contains("StateDirectory=routerd"), "feedback and learned state need a writable /var/lib/routerd under ProtectSystem=strict")
    }

    /// Whether routerd embeds a text with its encoder on `kernel` in a process that may not make
    /// memory executable after writing it: the prctl that MemoryDenyWriteExecute=yes applies
    /// (PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN, inherited across exec), set by a launcher.
    static func embedsUnderMemoryDenyWriteExecute(kernel: String) throws -> Bool {
        let launcher = [
            "/usr/bin/python3", "-c",
            "import ctypes, os, sys\nif ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0: sys.exit(97)\nos.execv(sys.argv[1], sys.argv[1:])",
        ]
        let encoders = EncoderFixture.encoders() + "\n    kernel: \(kernel)"
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, encoders: encoders) }, launcher: launcher)
        let reply = try? daemon.connect().request(#"{"op":"embed","encoder":"minilm","text":"a first embed runs the kernels"}"#)
        return reply?.ok == true && daemon.process.isRunning
    }

    /// The shipped unit runs the shipped config's encoder. Under MemoryDenyWriteExecute oneDNN's JIT
    /// cannot run (the first embed dies), OpenBLAS can: the unit may deny W^X only if every
    /// shipped encoder uses a kernel that works under it. Checked through the prctl the setting
    /// applies, on this machine's kernel (6.3 or later).
    @Test(.requires(.encoderModel)) func theShippedUnitsMemoryProtectionsLetTheShippedEncoderRun() throws {
        let service = try String(contentsOfFile: Package.root + "/systemd/routerd.service", encoding: .utf8)
        let deniesWriteExecute = service.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces) == "MemoryDenyWriteExecute=yes" }
        let config = try String(contentsOfFile: Package.root + "/etc/routerd/routerd.yaml", encoding: .utf8)
        let kernels = Set(
            config.split(separator: "\n").compactMap { line -> String? in
                let text = line.trimmingCharacters(in: .whitespaces)
                return text.hasPrefix("kernel:") ? String(text.dropFirst("kernel:".count)).trimmingCharacters(in: .whitespaces) : nil
            })
        let shipped = kernels.isEmpty ? ["onednn"] : kernels  // onednn is the default
        #expect(try Self.embedsUnderMemoryDenyWriteExecute(kernel: "openblas"), "OpenBLAS needs no JIT, so it runs under the setting")
        let onednn = try Self.embedsUnderMemoryDenyWriteExecute(kernel: "onednn")
        if deniesWriteExecute {
            for kernel in shipped {
                #expect(kernel == "openblas" || onednn, "the unit denies W^X, and the shipped config's kernel \(kernel) cannot run under it")
            }
        } else {
            #expect(!onednn, "oneDNN now runs under MemoryDenyWriteExecute: the unit could turn it back on")
        }
    }
}
