import Foundation
import RouterClient
import RouterConfig
import RouterProtocol
import RouterVocabulary

/// The most expensive request of each op a client may send at a config's limits, each sent to a
/// routerd of its own, with the time to its reply and the memory it made the daemon take.
///
/// Each case gets a fresh daemon, warmed up with one short route and embed, so the peak is that
/// request's and not what an earlier one left in malloc's free lists. The peak is Linux's VmHWM,
/// reset with `clear_refs` just before the request.
public struct WorstRequests: Sendable {
    /// One request and what it stands for.
    public struct Case: Sendable {
        public var name: String
        public var request: Request
    }

    /// What one case cost.
    public struct Measurement: Sendable {
        public var name: String
        /// "ok", or the error code of the reply.
        public var reply: String
        public var seconds: Double
        /// The daemon's peak resident memory during the request, above what it held before, in MiB.
        public var peakMiB: Double?
        /// The request line's size, in bytes.
        public var lineBytes: Int
    }

    public var config: String
    public var routerd: String
    /// A router with an encoder (its long-text policy as the config sets it), and an sw_ranking router.
    public var router: String
    public var rankingRouter: String?

    public init(config: String, routerd: String, router: String, rankingRouter: String?) {
        self.config = config
        self.routerd = routerd
        self.router = router
        self.rankingRouter = rankingRouter
    }

    /// The config's limits, and the name of `router`'s encoder.
    public func limits() throws -> (limits: DaemonConfig.Limits, encoder: String) {
        let loaded = try loadDaemonConfig(config, routerd: routerd)
        guard let encoder = loaded.routers.first(where: { $0.name == router })?.encoder else {
            throw BenchmarkRunError("\(config) has no router '\(router)' with an encoder; pass --router")
        }
        return (loaded.limits, encoder)
    }

    /// The cases at `limits`. A text of `n` "! " pairs is `n` word pieces, the most per byte
    /// ASCII allows; "é" repeated is one unbroken non-ASCII word.
    public func cases(limits: DaemonConfig.Limits, encoder: String) -> [Case] {
        let lineTexts = limits.maxLineBytes - 512  // room for the rest of the request line
        let bangs = { (count: Int) in String(repeating: "! ", count: count) }
        let window = 254
        let fullTexts = max(1, limits.maxTokens / (window + 2))
        let windowsPieces = window + (limits.maxWindows - 1) * 127
        func distinct(_ count: Int, pieces: Int) -> [String] { (0..<count).map { "\($0) " + bangs(pieces - 2) } }
        var cases: [Case] = [
            Case(name: "route: a prompt as long as a line", request: .route(RouteRequest(router: router, prompt: bangs(lineTexts / 2)))),
            Case(
                name: "route: a line-long word, not ASCII",
                request: .route(RouteRequest(router: router, prompt: String(repeating: "é", count: lineTexts / 2)))),
            Case(
                name: "score: max_texts prompts of 254 pieces",
                request: .score(ScoreRequest(router: router, prompts: distinct(limits.maxTexts, pieces: window)))),
            Case(
                name: "score: max_tokens of full prompts",
                request: .score(ScoreRequest(router: router, prompts: distinct(fullTexts, pieces: window)))),
            Case(
                name: "embed: tail of a line-long text",
                request: .embed(EmbedRequest(encoder: encoder, texts: [bangs(lineTexts / 2)], longText: .tail))),
            Case(
                name: "embed: windows, max_windows of them",
                request: .embed(EmbedRequest(encoder: encoder, texts: [bangs(windowsPieces)], longText: .windows))),
            Case(
                name: "embed: windows of a line-long text",
                request: .embed(EmbedRequest(encoder: encoder, texts: [bangs(lineTexts / 2)], longText: .windows))),
            Case(
                name: "embed: max_texts texts of 254 pieces",
                request: .embed(EmbedRequest(encoder: encoder, texts: distinct(limits.maxTexts, pieces: window)))),
            Case(
                name: "embed: max_tokens of full texts, with tokens",
                request: .embed(EmbedRequest(encoder: encoder, texts: distinct(fullTexts, pieces: window), tokens: true))),
        ]
        if let rankingRouter {
            cases.append(
                Case(
                    name: "score \(rankingRouter): max_tokens of full prompts",
                    request: .score(ScoreRequest(router: rankingRouter, prompts: distinct(fullTexts, pieces: window)))))
            let short = max(1, min(limits.maxTexts, limits.maxTokens / 8))
            cases.append(
                Case(
                    name: "score \(rankingRouter): \(short) short prompts",
                    request: .score(ScoreRequest(router: rankingRouter, prompts: (0..<short).map { "\($0) !" }))))
        }
        return cases
    }

    /// Runs every case against a daemon of its own; `progress` gets each measurement as it is made.
    public func run(_ cases: [Case], folder: String, progress: (Measurement) -> Void) async throws -> [Measurement] {
        var results: [Measurement] = []
        for (index, item) in cases.enumerated() {
            let socket = folder + "/worst-\(index).sock"
            let daemon = try ChildDaemon(
                binary: routerd, config: config, socket: socket, log: folder + "/routerd-\(index).log",
                arguments: ["--socket", socket, "--log-level", "warning"])
            defer { daemon.stop() }
            let connection: RouterConnection
            do {
                connection = try await RouterConnection.connect(socketPath: socket)
            } catch {
                throw BenchmarkRunError("cannot connect to the daemon it started on \(socket): \(error)")
            }
            // Warm up: the model's first pass and the plugins' first calls are not this request's cost.
            _ = try? await connection.rawResponse(.route(RouteRequest(router: router, prompt: "warm up")))
            _ = try? await connection.rawResponse(.embed(EmbedRequest(texts: ["warm up"])))
            let line = try RequestCodec.encode(item.request, id: nil)
            let before = daemon.residentKiB
            let peakKnown = daemon.resetPeak()
            let start = ContinuousClock.now
            let reply: Data
            do {
                reply = try await connection.rawResponse(item.request)
            } catch {
                throw BenchmarkRunError("\(item.name): no reply (\(error)); see \(folder)/routerd-\(index).log")
            }
            let elapsed = ContinuousClock.now - start
            let peak = peakKnown ? daemon.peakResidentKiB : nil
            await connection.close()
            let measurement = Measurement(
                name: item.name, reply: Self.outcome(of: reply),
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                peakMiB: peak.flatMap { peak in before.map { Double(max(0, peak - $0)) / 1024 } }, lineBytes: line.count)
            progress(measurement)
            results.append(measurement)
        }
        return results
    }

    /// "ok" or the reply's error code.
    static func outcome(of reply: Data) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: reply) as? [String: Any] else { return "unreadable reply" }
        if object["ok"] as? Bool == true { return "ok" }
        return ((object["error"] as? [String: Any])?["code"] as? String) ?? "error"
    }
}
