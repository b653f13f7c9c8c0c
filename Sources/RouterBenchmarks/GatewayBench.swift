#if Gateway
    import AsyncHTTPClient
    import Foundation
    import NIOCore
    import NIOHTTP1
    import Synchronization

    /// Closed-loop HTTP load: `connections` clients, each sending the next chat completion as soon as
    /// the last one is answered, for a number of requests or a time.
    public struct HTTPLoad: Sendable {
        public struct Result: Sendable {
            public var requests: Int
            public var errors: Int
            public var seconds: Double
            /// Latencies in seconds, sorted.
            public var latencies: [Double]
            public var throughput: Double { Double(requests) / seconds }
            public func quantile(_ q: Double) -> Double {
                latencies.isEmpty ? .nan : latencies[min(latencies.count - 1, Int((Double(latencies.count) * q).rounded(.up)) - 1)]
            }
        }

        public let client: HTTPClient
        public let url: String
        public let body: [UInt8]
        public let headers: [(String, String)]

        public init(client: HTTPClient, url: String, model: String, stream: Bool = false, headers: [(String, String)] = []) {
            self.client = client
            self.url = url
            body = Array(
                #"{"model":"\#(model)","messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":8,"stream":\#(stream)}"#
                    .utf8)
            self.headers = headers
        }

        /// One request; its latency, or nil when it failed (a status other than 200, or no answer).
        public func once() async -> Double? {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            request.body = .bytes(ByteBuffer(bytes: body))
            let start = ContinuousClock.now
            do {
                let response = try await client.execute(request, timeout: .seconds(60))
                _ = try await response.body.collect(upTo: 1 << 24)
                guard response.status == .ok else { return nil }
            } catch {
                return nil
            }
            let elapsed = ContinuousClock.now - start
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        }

        /// `connections` closed loops until `requests` are answered or `seconds` have passed.
        public func run(connections: Int, requests: Int? = nil, seconds: Double? = nil) async -> Result {
            let remaining = RequestQuota(requests ?? Int.max)
            let deadline = ContinuousClock.now + .milliseconds(Int64((seconds ?? 1e6) * 1000))
            let start = ContinuousClock.now
            let samples: [(latencies: [Double], errors: Int)] = await withTaskGroup(of: ([Double], Int).self) { group in
                for _ in 0..<connections {
                    group.addTask {
                        var latencies: [Double] = []
                        var errors = 0
                        while ContinuousClock.now < deadline {
                            guard remaining.take() else { break }
                            if let latency = await once() { latencies.append(latency) } else { errors += 1 }
                        }
                        return (latencies, errors)
                    }
                }
                var all: [([Double], Int)] = []
                for await sample in group { all.append(sample) }
                return all.map { (latencies: $0.0, errors: $0.1) }
            }
            let elapsed = ContinuousClock.now - start
            let latencies = samples.flatMap(\.latencies).sorted()
            return Result(
                requests: latencies.count, errors: samples.map(\.errors).reduce(0, +),
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18, latencies: latencies)
        }
    }

    /// Requests left to send, shared by a load's connections.
    private final class RequestQuota: Sendable {
        private let left: Mutex<Int>
        init(_ count: Int) { left = Mutex(count) }
        func take() -> Bool {
            left.withLock { left in
                guard left > 0 else { return false }
                left -= 1
                return true
            }
        }
    }

    /// `make bench-gateway`: the gateway's overhead against calling a fast stub upstream directly,
    /// its fallback under a failing or hanging first candidate, the memory of many open streams,
    /// and peers' gateways on the same stub, all in one run so that ratios compare like with like.
    public struct GatewayBench: Sendable {
        public var routerd: String
        /// Requests of each one-connection latency phase.
        public var requests = 2000
        /// Seconds of each throughput phase.
        public var seconds = 5.0
        public var connections = 64
        public var streams = 256
        /// Other gateways already running against the stub (`name`, base URL, model name, bearer key).
        public var peers: [(name: String, url: String, model: String, key: String?)] = []
        /// The stub's port (0: any free one); peers started beforehand need a fixed one.
        public var stubPort = 0
        public var peerConnections = 16

        public init(routerd: String) { self.routerd = routerd }

        public func run(print say: @Sendable (String) -> Void) async throws -> String {
            let stub = try await StubUpstream(port: stubPort)
            defer { stub.stop() }
            var pool = HTTPClient.Configuration()
            pool.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(streams, connections) + 8)
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: pool)
            do {
                let report = try await measure(stub: stub, client: client, say: say)
                try await client.shutdown()
                return report
            } catch {
                try? await client.shutdown()
                throw error
            }
        }

        private func measure(stub: StubUpstream, client: HTTPClient, say: @Sendable (String) -> Void) async throws -> String {
            var lines: [String] = []
            func row(_ name: String, _ one: HTTPLoad.Result, _ many: HTTPLoad.Result, manyConnections: Int) -> String {
                String(
                    format: "| %@ | %.3f | %.3f | %.0f | %.0f (%d conns) | %d |", name, one.quantile(0.5) * 1000, one.quantile(0.99) * 1000,
                    one.throughput, many.throughput, manyConnections, one.errors + many.errors)
            }

            // 1. The stub alone: the anchor every ratio is taken against.
            say("bench-gateway: the stub upstream alone on 127.0.0.1:\(stub.port)")
            let direct = HTTPLoad(client: client, url: stub.baseURL("ok") + "/chat/completions", model: "ok")
            _ = await direct.run(connections: 4, requests: 400)
            let directOne = await direct.run(connections: 1, requests: requests)
            let directMany = await direct.run(connections: connections, seconds: seconds)
            let directPeer = await direct.run(connections: peerConnections, seconds: seconds)

            // 2. routerd without the gateway, for the memory baseline; then with it.
            let folder = NSTemporaryDirectory() + "routerd-bench-gateway-\(getpid())"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let plugins = ((routerd as NSString).deletingLastPathComponent as NSString).appendingPathComponent("../../plugins")
            let port = try Self.freePort()
            func config(gateway: Bool) -> String {
                """
                socket: {path: \(folder)/routerd.sock}
                plugins: {search_paths: [\(Self.pluginFolder(routerd: routerd, fallback: plugins))]}
                logging: {level: warning}
                decision_log: {path: \(folder)/decisions.jsonl}
                models:
                  ok: {input: 0.1, output: 0.2, endpoint: {base_url: "\(stub.baseURL("ok"))"}}
                  ok2: {input: 1.0, output: 2.0, endpoint: {base_url: "\(stub.baseURL("ok2"))"}}
                  failing: {input: 10.0, output: 30.0, endpoint: {base_url: "\(stub.baseURL("failing"))"}}
                  hanging: {input: 10.0, output: 30.0, endpoint: {base_url: "\(stub.baseURL("hanging"))"}}
                  streaming: {input: 0.1, output: 0.2, endpoint: {base_url: "\(stub.baseURL("streaming"))"}}
                \(gateway ? "gateway:\n  listen: 127.0.0.1:\(port)\n  max_concurrent: 1024\n  attempt_timeout: 0.5\n  fallback: {retries: 1, retry_delay: 0.05, max_retry_delay: 0.1, cool_down_after: 1000}" : "")
                routers:
                  bench: {plugin: random, threshold: 0.5, strong_model: ok2, weak_model: ok}
                  fallback: {plugin: random, threshold: 0, strong_model: failing, weak_model: ok}
                  hang: {plugin: random, threshold: 0, strong_model: hanging, weak_model: ok}
                  stream: {plugin: random, threshold: 0, strong_model: streaming, weak_model: ok}
                """
            }
            stub.set("failing", .serverError)
            stub.set("hanging", .hang)
            stub.set("streaming", .slow(chunks: 20, interval: .milliseconds(100)))
            try config(gateway: false).write(toFile: folder + "/plain.yaml", atomically: true, encoding: .utf8)
            let plain = try ChildDaemon(binary: routerd, config: folder + "/plain.yaml", socket: folder + "/routerd.sock", log: folder + "/plain.log")
            try await Task.sleep(for: .seconds(1))
            let plainRSS = residentKiB(of: "\(plain.pid)") ?? 0
            plain.stop()
            try? FileManager.default.removeItem(atPath: folder + "/routerd.sock")

            try config(gateway: true).write(toFile: folder + "/gateway.yaml", atomically: true, encoding: .utf8)
            let daemon = try ChildDaemon(
                binary: routerd, config: folder + "/gateway.yaml", socket: folder + "/routerd.sock", log: folder + "/gateway.log")
            defer { daemon.stop() }
            let base = "http://127.0.0.1:\(port)/v1/chat/completions"
            let gateway = HTTPLoad(client: client, url: base, model: "router-bench")
            var ready = false
            var probes = 0
            for _ in 0..<200 where !ready {
                probes += 1
                ready = await gateway.once() != nil
                if !ready { try await Task.sleep(for: .milliseconds(50)) }
            }
            guard ready else { throw BenchmarkRunError("the gateway did not answer on 127.0.0.1:\(port); see \(folder)/gateway.log") }
            say("bench-gateway: through routerd's gateway on 127.0.0.1:\(port) (router-bench: random, two healthy candidates)")
            let gatewayWarmUp = await gateway.run(connections: 4, requests: 400)
            let gatewayOne = await gateway.run(connections: 1, requests: requests)
            let gatewayMany = await gateway.run(connections: connections, seconds: seconds)
            let gatewayPeer = await gateway.run(connections: peerConnections, seconds: seconds)
            // A catalogue model by name: forwarded unrouted, so no decision and no decision-log
            // line. What is left is the HTTP in and out, the gateway's floor on these libraries.
            let unrouted = HTTPLoad(client: client, url: base, model: "ok")
            let unroutedOne = await unrouted.run(connections: 1, requests: requests)
            let unroutedMany = await unrouted.run(connections: connections, seconds: seconds)

            lines.append("| path | p50 ms (1 conn) | p99 ms (1 conn) | req/s (1 conn) | req/s (many) | errors |")
            lines.append("|---|---|---|---|---|---|")
            lines.append(row("stub, direct", directOne, directMany, manyConnections: connections))
            lines.append(row("routerd gateway", gatewayOne, gatewayMany, manyConnections: connections))
            lines.append(row("gateway, unrouted (no decision, no log line)", unroutedOne, unroutedMany, manyConnections: connections))
            lines.append(row("stub, direct", directOne, directPeer, manyConnections: peerConnections))
            lines.append(row("routerd gateway", gatewayOne, gatewayPeer, manyConnections: peerConnections))
            var peerResults: [(String, HTTPLoad.Result, HTTPLoad.Result)] = []
            for peer in peers {
                say("bench-gateway: peer \(peer.name) at \(peer.url)")
                let load = HTTPLoad(
                    client: client, url: peer.url + "/chat/completions", model: peer.model,
                    headers: peer.key.map { [("authorization", "Bearer \($0)")] } ?? [])
                guard await load.once() != nil else {
                    lines.append("| \(peer.name) | (did not answer at \(peer.url)) | | | | |")
                    continue
                }
                _ = await load.run(connections: 4, requests: 100)
                let one = await load.run(connections: 1, requests: min(requests, 500))
                let many = await load.run(connections: peerConnections, seconds: seconds)
                peerResults.append((peer.name, one, many))
                lines.append(row(peer.name, one, many, manyConnections: peerConnections))
            }

            // 3. Fallback: the first candidate answers 500 to every call (no cool-down, so every
            // request pays for it), or hangs past the attempt timeout (0.5 s).
            say("bench-gateway: fallback (first candidate failing, then hanging)")
            let failing = await HTTPLoad(client: client, url: base, model: "router-fallback").run(connections: 8, seconds: seconds)
            let hanging = await HTTPLoad(client: client, url: base, model: "router-hang").run(connections: 16, requests: 64)
            let healthyCall = gatewayOne.quantile(0.99)

            // 4. Memory: 256 streams open at once, 2 s each.
            say("bench-gateway: \(streams) concurrent streams")
            let streamLoad = HTTPLoad(client: client, url: base, model: "router-stream", stream: true)
            let peak = Mutex(0)
            let sampler = Task {
                while !Task.isCancelled {
                    let now = residentKiB(of: "\(daemon.pid)") ?? 0
                    peak.withLock { $0 = max($0, now) }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            let streamed = await streamLoad.run(connections: streams, requests: streams)
            sampler.cancel()
            let peakRSS = peak.withLock { $0 }
            // Nothing lost: every routed request answered has its line in the decision log, with the
            // model that served it (or none), its attempts and its cost.
            let routed = [gatewayWarmUp, gatewayOne, gatewayMany, gatewayPeer, failing, hanging, streamed].map { $0.requests + $0.errors }
                .reduce(probes, +)
            let logged = (try? String(contentsOfFile: folder + "/decisions.jsonl", encoding: .utf8))?.split(separator: "\n") ?? []
            let complete = logged.filter { $0.contains(#""via":"gateway""#) && $0.contains(#""attempts":["#) }.count

            let addedP50 = (gatewayOne.quantile(0.5) - directOne.quantile(0.5)) * 1000
            let addedP99 = (gatewayOne.quantile(0.99) - directOne.quantile(0.99)) * 1000
            lines.append("")
            lines.append(
                String(format: "- Added latency on one connection: %.3f ms at p50 (goal ≤ 0.3), %.3f ms at p99 (goal ≤ 2).", addedP50, addedP99))
            lines.append(
                String(
                    format: "- Unrouted (HTTP in and out alone): %.3f ms added at p50, %.2f× the stub's direct throughput at %d connections.",
                    (unroutedOne.quantile(0.5) - directOne.quantile(0.5)) * 1000, unroutedMany.throughput / directMany.throughput, connections))
            lines.append(
                String(
                    format: "- Throughput at %d connections: %.2f× the stub's direct (goal ≥ 0.4); at %d: %.2f×.", connections,
                    gatewayMany.throughput / directMany.throughput, peerConnections, gatewayPeer.throughput / directPeer.throughput))
            for (name, one, many) in peerResults {
                let peerAdded = (one.quantile(0.5) - directOne.quantile(0.5)) * 1000
                lines.append(
                    String(
                        format:
                            "- Against %@ at %d connections: %.1f× its throughput (goal ≥ 50); added p50 %.3f ms vs its %.3f ms, %.1f%% of it (goal ≤ 5%%).",
                        name, peerConnections, gatewayPeer.throughput / many.throughput, addedP50, peerAdded, 100 * addedP50 / peerAdded))
            }
            lines.append(
                String(
                    format:
                        "- First candidate answering 500 (8 connections): %d answered, %d errors; p50 %.1f ms, p99 %.1f ms (one retry of 50–100 ms and two healthy calls).",
                    failing.requests, failing.errors, failing.quantile(0.5) * 1000, failing.quantile(0.99) * 1000))
            lines.append(
                String(
                    format:
                        "- First candidate hanging (16 connections): %d answered, %d errors; p99 %.0f ms (goal ≤ the 500 ms attempt timeout + a healthy call, %.1f ms).",
                    hanging.requests, hanging.errors, hanging.quantile(0.99) * 1000, healthyCall * 1000))
            lines.append(
                String(
                    format:
                        "- %d concurrent streams (%d answered, %d errors): routerd's peak RSS %.1f MB, %.1f MB over the same config without the gateway (%.1f MB; goal ≤ 50 MB).",
                    streams, streamed.requests, streamed.errors, Double(peakRSS) / 1024, Double(peakRSS - plainRSS) / 1024, Double(plainRSS) / 1024))
            lines.append(
                "- Decision log: \(logged.count) lines for \(routed) routed requests answered; \(complete) of them with `via: gateway`, the attempts, the serving model and the status."
            )
            return lines.joined(separator: "\n")
        }

        static func pluginFolder(routerd: String, fallback: String) -> String {
            // The repository's plugins/ (descriptors), found from the build folder routerd is in.
            var folder = URL(fileURLWithPath: routerd).resolvingSymlinksInPath().deletingLastPathComponent()
            for _ in 0..<4 {
                if FileManager.default.fileExists(atPath: folder.appendingPathComponent("plugins/random/plugin.yaml").path) {
                    return folder.appendingPathComponent("plugins").path
                }
                folder.deleteLastPathComponent()
            }
            return fallback
        }

        /// A loopback TCP port free now (the kernel's choice for a bind to port 0), for a listener the
        /// caller's config names before it binds.
        public static func freePort() throws -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw BenchmarkRunError("cannot find a free port") }
            return Int(UInt16(bigEndian: address.sin_port))
        }
    }
#endif
