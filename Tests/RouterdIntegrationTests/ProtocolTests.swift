import Foundation
import RouterProtocol
import RouterdTestSupport
import Testing

/// The wire protocol, against the real daemon and the real `random` plugin.
@Suite(.timeLimit(.minutes(10))) struct ProtocolTests {
    @Test func routeReturnsADecisionFromTheLoadedPlugin() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        let response = try connection.request(#"{"id":1,"op":"route","router":"random","prompt":"Prove that there are infinitely many primes."}"#)
        #expect(response.ok)
        #expect(response["id"] as? Int == 1)
        let result = response.result
        let score = try #require(result["score"] as? Double)
        #expect((0...1).contains(score))
        #expect(result["threshold"] as? Double == 0.5)
        #expect(result["tier"] as? String == (score >= 0.5 ? "strong" : "weak"))
        #expect(result["model"] as? String == (score >= 0.5 ? TestConfig.strong : TestConfig.weak))
        #expect(result["router"] as? String == "random")
        #expect(result["generation"] as? Int == 1)
        #expect(result["elapsed_us"] is Double)
    }

    @Test func seededRandomScoresArePerPromptAndThresholdsApply() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        var scores: [Double] = []
        for index in 0..<40 {
            let score = try connection.decision(#"{"op":"route","router":"random","prompt":"prompt \#(index)"}"#).strongScore
            scores.append(score)
            let again = try connection.decision(#"{"op":"route","router":"random","prompt":"prompt \#(index)"}"#)
            #expect(again.score == score, "a seeded router gives a prompt the same score every time")
            // A per-request threshold overrides the configured one.
            let strict = try connection.decision(#"{"op":"route","router":"random","prompt":"prompt \#(index)","threshold":\#(score)}"#)
            #expect(strict.tier == .strong, "score ≥ threshold routes strong")
            #expect(strict.threshold == score)
            let loose = try connection.decision(#"{"op":"route","router":"random","prompt":"prompt \#(index)","threshold":\#(score.nextUp)}"#)
            #expect(loose.tier == .weak, "score < threshold routes weak")
        }
        // Uniform scores: 40 draws spread over [0, 1] and are not all alike.
        #expect(Set(scores).count == 40)
        #expect(scores.contains { $0 < 0.3 } && scores.contains { $0 > 0.7 })
    }

    @Test func modelNameAndMessagesFollowRouteLLM() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        let direct = try connection.request(#"{"op":"route","router":"random","prompt":"second question"}"#)
        let score = try #require(direct.result["score"] as? Double)
        // router-<name>-<threshold>, and the last user turn is what gets routed.
        let viaModel = try connection.request(
            #"{"op":"route","model":"router-random-0.0","messages":[{"role":"user","content":"first question"},{"role":"assistant","content":"an answer"},{"role":"user","content":"second question"}]}"#
        )
        #expect(viaModel.ok)
        #expect(viaModel.result["score"] as? Double == score)
        #expect(viaModel.result["threshold"] as? Double == 0.0)
        #expect(viaModel.result["tier"] as? String == "strong")
        // Content as a list of parts, as newer OpenAI clients send it.
        let parts = try connection.request(
            #"{"op":"route","router":"random","messages":[{"role":"user","content":[{"type":"text","text":"second question"}]}]}"#)
        #expect(parts.result["score"] as? Double == score)
        let mismatch = try connection.request(#"{"op":"route","router":"other","model":"router-random-0.5","prompt":"x"}"#)
        #expect(mismatch.errorCode == "bad_field")
    }

    @Test func scoreReturnsTheSameScoresAsRoute() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        let prompts = ["alpha", "beta", "gamma with ünïcödé", ""]
        let batch = try connection.request(
            #"{"id":"batch","op":"score","router":"random","prompts":\#(String(decoding: try JSONSerialization.data(withJSONObject: prompts), as: UTF8.self))}"#
        )
        #expect(batch["id"] as? String == "batch")
        let scores = try #require(batch.result["scores"] as? [Double])
        #expect(scores.count == prompts.count)
        for (prompt, score) in zip(prompts, scores) {
            let single = try connection.request(
                #"{"op":"route","router":"random","prompt":\#(String(decoding: try JSONSerialization.data(withJSONObject: prompt, options: .fragmentsAllowed), as: UTF8.self))}"#
            )
            #expect(single.result["score"] as? Double == score)
        }
    }

    @Test func routersStatusHealthAndStatsDescribeTheDaemon() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        _ = try connection.request(#"{"op":"route","router":"random","prompt":"a"}"#)
        _ = try connection.request(#"{"op":"route","router":"nope","prompt":"a"}"#)

        let routers = try connection.request(#"{"op":"routers"}"#).result
        let list = try #require(routers["routers"] as? [[String: Any]])
        #expect(list.count == 1)
        #expect(list[0]["name"] as? String == "random")
        #expect(list[0]["plugin"] as? String == "random")
        #expect(list[0]["strong_model"] as? String == TestConfig.strong)
        #expect(list[0]["weak_model"] as? String == TestConfig.weak)
        #expect(list[0]["threshold"] as? Double == 0.5)
        // The plugin's description arrives as a JSON object, not as JSON text inside JSON.
        let details = try #require(list[0]["details"] as? [String: Any])
        #expect(details["seed"] as? Int == 7)
        #expect((details["score_quantiles"] as? [Double])?.count == 101, "uniform scores publish their quantiles for strong_fraction")

        for op in ["status", "health"] {
            let status = try connection.request(#"{"op":"\#(op)"}"#).result
            #expect(status["generation"] as? Int == 1)
            #expect(status["pid"] as? Int == Int(daemon.process.processIdentifier))
            #expect(status["socket"] as? String == daemon.socket)
            #expect((status["uptime_seconds"] as? Double ?? -1) >= 0)
            #expect(status["version"] is String)
            let plugins = try #require(status["plugins"] as? [[String: Any]])
            #expect(plugins.first?["name"] as? String == "random")
            #expect((plugins.first?["library"] as? String)?.hasSuffix("/libRandomRouter.so") == true)
            #expect(plugins.first?["abi_version"] as? Int == 1)
        }

        let stats = try connection.request(#"{"op":"stats"}"#).result
        #expect((stats["requests"] as? [String: Int])?["route"] == 2)
        #expect((stats["errors"] as? [String: Int])?["unknown_router"] == 1)
        let random = try #require((stats["routers"] as? [String: [String: Any]])?["random"])
        #expect(random["decisions"] as? Int == 1)
        #expect((random["strong"] as? Int ?? 0) + (random["weak"] as? Int ?? 0) == 1)
        #expect(random["fallbacks"] as? Int == 0)
        // Quantiles over the recent decisions: one decision, so every quantile is its score and latency.
        let scores = try #require(random["score_quantiles"] as? [String: Double])
        #expect(Set(scores.keys) == ["p10", "p50", "p90"])
        #expect(scores["p10"] == scores["p90"])
        let latency = try #require(random["latency_us"] as? [String: Double])
        #expect((latency["p50"] ?? -1) > 0 && latency["p50"] == latency["p99"])
        #expect(stats["connections_open"] as? Int == 1)
    }

    /// Every error code a client can provoke with one line, each followed by a
    /// valid request on the same connection that must still be served.
    @Test(arguments: BadLine.all)
    func errorsAreAnsweredAndTheConnectionLivesOn(_ bad: BadLine) throws {
        let (line, code) = (bad.line, bad.code)
        let daemon = try Daemon()
        let connection = try daemon.connect()
        let response = try connection.request(line)
        #expect(response.ok == false)
        #expect(response.errorCode == code, "\(line.prefix(80)) → \(response)")
        #expect(!response.errorMessage.isEmpty)
        if line.hasPrefix(#"{"id":1,"#) { #expect(response["id"] as? Int == 1, "the id is echoed in errors") }
        let next = try connection.request(#"{"id":2,"op":"route","router":"random","prompt":"still here?"}"#)
        #expect(next.ok)
        #expect(next["id"] as? Int == 2)
    }

    @Test func invalidUTF8GetsBadJSON() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        try connection.send(Array(#"{"op":"route","router":"random","prompt":""#.utf8) + [0xFF, 0xFE, 0xC3] + Array("\"}\n".utf8))
        let response = try JSON.object(try #require(try connection.readLine()))
        #expect(response.errorCode == "bad_json")
        #expect(response.errorMessage.contains("UTF-8"))
        #expect(try connection.request(#"{"op":"health"}"#).ok)
    }

    @Test func anOversizedLineGetsOneErrorAndIsNotBuffered() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, limits: "  max_line_bytes: 4096") })
        let connection = try daemon.connect()
        // 8 MiB in 64 KiB pieces, then a newline and a valid request.
        let piece = [UInt8](repeating: UInt8(ascii: "x"), count: 65_536)
        for _ in 0..<128 { try connection.send(piece) }
        try connection.send("\n" + #"{"id":5,"op":"route","router":"random","prompt":"after"}"# + "\n")
        let first = try JSON.object(try #require(try connection.readLine()))
        #expect(first.errorCode == "line_too_long")
        #expect(first.errorMessage.contains("4096"))
        let second = try JSON.object(try #require(try connection.readLine()))
        #expect(second["id"] as? Int == 5)
        #expect(second.ok, "exactly one error for the long line; the next line is served")
        // A line just under the limit is accepted.
        let padding = String(repeating: "y", count: 3900)
        #expect(try connection.request(#"{"op":"route","router":"random","prompt":"\#(padding)"}"#).ok)
        // The daemon dropped the long line as it arrived rather than holding it. (Under AddressSanitizer
        // freed memory waits in its quarantine and RSS says nothing about what the daemon holds.)
        let rss = try residentKiB(daemon.process.processIdentifier)
        #expect(Package.sanitizer != nil || rss < 200_000, "routerd RSS \(rss) KiB after an 8 MiB line")
    }

    @Test func pipelinedResponsesComeBackInRequestOrder() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        var batch = ""
        for index in 0..<2000 {
            switch index % 4 {
            case 0: batch += #"{"id":\#(index),"op":"route","router":"random","prompt":"p\#(index)"}"# + "\n"
            case 1: batch += #"{"id":\#(index),"op":"score","router":"random","prompts":["a","b"]}"# + "\n"
            case 2: batch += #"{"id":\#(index),"op":"nonsense"}"# + "\n"
            default: batch += #"{"id":\#(index),"op":"reload"}"# + "\n"  // deferred to a thread pool, still in order
            }
        }
        try connection.send(batch)
        for index in 0..<2000 {
            let response = try JSON.object(try #require(try connection.readLine()))
            #expect(response["id"] as? Int == index)
            if response["id"] as? Int != index { break }
        }
    }

    @Test func aClientThatStopsSendingStillGetsEveryReply() throws {
        let daemon = try Daemon()
        let connection = try daemon.connect()
        try connection.send(#"{"id":1,"op":"route","router":"random","prompt":"a"}"# + "\n" + #"{"id":2,"op":"reload"}"# + "\n")
        connection.finishSending()
        #expect(try JSON.object(try #require(try connection.readLine()))["id"] as? Int == 1)
        #expect(try JSON.object(try #require(try connection.readLine()))["id"] as? Int == 2)
        #expect(try connection.readLine() == nil, "then the daemon closes")
    }

    @Test func aClientThatNeverReadsDelaysNoOneElse() throws {
        let daemon = try Daemon()
        let stalled = try daemon.connect()
        // Send requests without reading a reply until the socket buffers are full both ways:
        // the daemon stops reading from this client instead of queueing its replies.
        _ = fcntl(stalled.fd, F_SETFL, fcntl(stalled.fd, F_GETFL) | O_NONBLOCK)
        let line = Array(#"{"op":"route","router":"random","prompt":"a stalled client asks again and again"}"#.utf8) + [0x0A]
        let rssBefore = try residentKiB(daemon.process.processIdentifier) * 1024
        // Up to 100 MB of pipelined requests; the daemon's backpressure stops it long before.
        let limit = 100_000_000 / line.count
        var sent = 0
        var buffered: [UInt8] = []
        while sent < limit {
            if buffered.isEmpty { buffered = line }
            let written = buffered.withUnsafeBytes { Glibc.send(stalled.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0, errno == EAGAIN { break }
            guard written > 0 else { break }
            buffered.removeFirst(written)
            if buffered.isEmpty { sent += 1 }
        }
        #expect(sent > 100 && sent < limit, "the daemon stopped reading after \(sent) requests")
        // What the daemon holds for this client is bounded by limits.max_in_flight and the socket
        // buffers, not by what the client sends.
        let growth = try residentKiB(daemon.process.processIdentifier) * 1024 - rssBefore
        #expect(growth < 32_000_000, "routerd grew by \(growth) bytes for one stalled client")
        // Everyone else is served as usual meanwhile.
        let other = try daemon.connect()
        for index in 0..<200 {
            let decision = try other.decision(#"{"op":"route","router":"random","prompt":"prompt \#(index)"}"#)
            #expect(decision.router == "random")
        }
        // The stalled client gets its replies, in order, once it reads.
        _ = fcntl(stalled.fd, F_SETFL, fcntl(stalled.fd, F_GETFL) & ~O_NONBLOCK)
        for _ in 0..<100 {
            let reply = try #require(try stalled.readLine())
            #expect(reply.contains(#""ok":true"#))
        }
    }

    /// Lines already read past `limits.max_in_flight` wait undecoded (issue 23, finding 8: with a
    /// limit of 4, one client's 32 pipelined requests, sent in one write, had been decoded and
    /// embedded as one batch of 32). With at most 4 of the connection's requests in flight, no
    /// encoder batch holds more than 4 of them: 32 requests take at least 8 batches.
    @Test(.requires(.encoderModel)) func pipelinedRequestsPastMaxInFlightWaitUndecoded() throws {
        let daemon = try Daemon(config: {
            TestConfig.yaml(socket: $0, routers: MFRouterTests.mfRouter(), limits: "  max_in_flight: 4", encoders: EncoderFixture.encoders())
        })
        let connection = try daemon.connect()
        func encoderStats() throws -> (batches: Int, requests: Int) {
            let encoder = try #require((try connection.request(#"{"op":"stats"}"#).result["encoders"] as? [String: Any])?["minilm"] as? [String: Any])
            return (try #require(encoder["batches"] as? Int), try #require(encoder["batched_requests"] as? Int))
        }
        let before = try encoderStats()  // the load's smoke prompt is one
        let tag = UInt32.random(in: 0...UInt32.max)
        let lines = (0..<32).map { #"{"op":"route","router":"mf","prompt":"a fresh prompt \#(tag) number \#($0)"}"# + "\n" }
        try connection.send(lines.joined())
        for _ in 0..<32 { #expect(try #require(try connection.readLine(timeout: 60)).contains(#""ok":true"#)) }
        let after = try encoderStats()
        #expect(after.requests - before.requests == 32)
        let batches = after.batches - before.batches
        #expect(batches >= 8, "\(batches) batches for 32 requests: more than 4 were in flight at once")
    }

    /// One local user cannot hold every connection (issue 23, finding 8): past its own cap a uid
    /// is refused, and another uid still connects.
    @Test(.requires(.actAsNobody)) func oneUserCannotTakeEveryConnection() throws {
        let nobody = try OtherUser.nobody()
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, limits: "  max_connections_per_uid: 2", mode: "0666") })
        // The three stay open while the other user connects.
        let held = try Self.thirdOfTwoConnections(daemon)
        let refusal = held.refusal
        #expect(refusal.errorCode == "overloaded" && refusal.errorMessage.contains("limits.max_connections_per_uid = 2"), "\(refusal)")
        let other = try runCommand(Requirement.setprivPath, nobody.run(try Package.binary("routerctl")) + ["status", "--socket", daemon.socket])
        #expect(other.status == 0, "another user still connects: \(other.stdout)\(other.stderr)")
    }

    /// Opens three connections to a daemon that admits two (in all, or per uid): the first two are
    /// admitted and answer, and the third's first line is its refusal.
    static func thirdOfTwoConnections(_ daemon: Daemon) throws -> (first: LineSocket, second: LineSocket, third: LineSocket, refusal: [String: Any]) {
        let first = try daemon.connect()
        // The harness's readiness probe may still be counted; wait until only `first` is open.
        #expect(try eventually { try first.request(#"{"op":"stats"}"#).result["connections_open"] as? Int == 1 })
        let second = try daemon.connect()
        #expect(try second.request(#"{"op":"health"}"#).ok)
        let third = try daemon.connect()
        return (first, second, third, try JSON.object(try #require(try third.readLine())))
    }

    @Test func connectionsBeyondTheLimitAreRefusedWithOverloaded() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, limits: "  max_connections: 2") })
        let (first, second, third, refusal) = try Self.thirdOfTwoConnections(daemon)
        #expect(refusal.errorCode == "overloaded")
        #expect(try third.readLine() == nil, "the refused connection is closed")
        // The admitted clients are unaffected, and a freed slot is reusable.
        #expect(try first.request(#"{"op":"health"}"#).ok)
        second.close()
        let admitted = eventually { (try? daemon.connect().request(#"{"op":"health"}"#))?.ok == true }
        #expect(admitted)
        let stats = try first.request(#"{"op":"stats"}"#).result
        #expect((stats["connections_rejected"] as? Int ?? 0) >= 1)
    }

    @Test func idleConnectionsAreClosedAfterTheTimeout() throws {
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, limits: "  idle_timeout: 0.3") })
        let connection = try daemon.connect()
        // Taken before the request, so the bound holds however late this thread wakes: the
        // daemon read the request after `start`, and may close only 0.3 s after that read.
        let start = Date()
        #expect(try connection.request(#"{"op":"health"}"#).ok)
        #expect(try connection.readLine(timeout: 10) == nil)
        #expect(Date().timeIntervalSince(start) >= 0.3)
    }
}

/// Resident set size of a process, in KiB.
func residentKiB(_ pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let value = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
    else { throw HarnessError("no VmRSS for pid \(pid)") }
    return value
}

/// A request line that must be answered with an error code.
struct BadLine: CustomTestStringConvertible, Sendable {
    var label: String
    var line: String
    var code: String

    var testDescription: String { "\(label) → \(code)" }

    static let all: [BadLine] = [
        BadLine(label: "not JSON", line: "not json at all", code: "bad_json"),
        BadLine(label: "truncated object", line: #"{"op":"route","router":"random","prompt":"unterminated"#, code: "bad_json"),
        BadLine(label: "array", line: "[1,2,3]", code: "bad_json"),
        BadLine(label: "string", line: #""just a string""#, code: "bad_json"),
        BadLine(
            label: "arrays nested 10,000 deep", line: String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000),
            code: "bad_json"),
        BadLine(
            label: "objects nested 10,000 deep",
            line: #"{"a":"# + String(repeating: #"{"a":"#, count: 10_000) + "1" + String(repeating: "}", count: 10_001), code: "bad_json"),
        BadLine(label: "no op", line: #"{"id":1}"#, code: "missing_field"),
        BadLine(label: "unknown op", line: #"{"id":1,"op":"teleport"}"#, code: "unknown_op"),
        BadLine(label: "numeric op", line: #"{"id":1,"op":7}"#, code: "bad_field"),
        BadLine(label: "route without router", line: #"{"id":1,"op":"route","prompt":"x"}"#, code: "missing_field"),
        BadLine(label: "route without prompt", line: #"{"id":1,"op":"route","router":"random"}"#, code: "missing_field"),
        BadLine(label: "numeric prompt", line: #"{"id":1,"op":"route","router":"random","prompt":42}"#, code: "bad_field"),
        BadLine(label: "string threshold", line: #"{"id":1,"op":"route","router":"random","prompt":"x","threshold":"high"}"#, code: "bad_field"),
        BadLine(label: "threshold above 1", line: #"{"id":1,"op":"route","router":"random","prompt":"x","threshold":1.5}"#, code: "bad_field"),
        BadLine(
            label: "messages without a user turn", line: #"{"id":1,"op":"route","router":"random","messages":[{"role":"system","content":"x"}]}"#,
            code: "bad_field"),
        BadLine(label: "model not router-<name>-<threshold>", line: #"{"id":1,"op":"route","model":"gpt-4","prompt":"x"}"#, code: "bad_field"),
        BadLine(label: "model 'router-'", line: #"{"id":1,"op":"route","model":"router-","prompt":"x"}"#, code: "bad_field"),
        BadLine(label: "unknown router", line: #"{"id":1,"op":"route","router":"missing","prompt":"x"}"#, code: "unknown_router"),
        BadLine(label: "prompts not a list", line: #"{"id":1,"op":"score","router":"random","prompts":"x"}"#, code: "bad_field"),
        BadLine(label: "object id", line: #"{"id":{"nested":true},"op":"status"}"#, code: "bad_field"),
    ]
}
