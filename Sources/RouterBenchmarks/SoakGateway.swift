import Foundation
import RouterConfig
import StableHash

/// Where the soak's gateway traffic goes: the gateway's port, and each catalogue model's name on
/// the stub upstream (its index, since model names may hold slashes a URL path would split).
struct SoakGatewayLayout: Sendable {
    let port: Int
    let stubBaseURL: @Sendable (String) -> String
    let stubNames: [String: String]
    /// Every name and alias of the catalogue's models, to its model's name (the gateway answers with that).
    let canonical: [String: String]

    init(port: Int, catalogue: ModelCatalogue, stubBaseURL: @escaping @Sendable (String) -> String) {
        self.port = port
        self.stubBaseURL = stubBaseURL
        canonical = Dictionary(
            catalogue.models.values.flatMap { model in ([model.name] + model.aliases).map { ($0, model.name) } },
            uniquingKeysWith: { first, _ in first })
        stubNames = Dictionary(uniqueKeysWithValues: catalogue.models.keys.sorted().enumerated().map { ($0.element, "m\($0.offset)") })
    }

    /// The catalogue `file` with an endpoint on the stub for every model, written to `folder`.
    func writeCatalogue(from file: String, folder: String) throws -> String {
        let catalogue: ModelCatalogue
        do {
            catalogue = try ConfigLoader.loadCatalogue(file: file)
        } catch {
            throw BenchmarkRunError("--models \(file): \(error.issues.map(\.description).joined(separator: "; "))")
        }
        func quoted(_ text: String) -> String { "\"" + text.replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var lines = ["# Written by routerctl soak from \(file), each model's endpoint on the soak's stub upstream.", "models:"]
        for (name, model) in catalogue.models.sorted(by: { $0.key < $1.key }) {
            let stub = stubNames[name] ?? name
            let aliases = model.aliases.map(quoted).joined(separator: ", ")
            lines.append(
                "  \(quoted(name)): {input: \(model.inputPrice), output: \(model.outputPrice), output_tokens: \(model.outputTokens), aliases: [\(aliases)], endpoint: {base_url: \(quoted(stubBaseURL(stub))), model: \(stub)}}"
            )
        }
        let path = folder + "/models.yaml"
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

#if Gateway
    import AsyncHTTPClient
    import NIOCore
    import NIOHTTP1

    /// One closed loop of gateway traffic: chat completions to every router, plain and streamed,
    /// a catalogue model by name, and requests that must be refused; meanwhile one upstream at a
    /// time fails (500, a hang past the attempt timeout, a stream cut after its first chunk).
    /// Every routed request must be answered by one of its router's candidates, whatever fails.
    struct SoakGatewayTraffic: Sendable {
        let layout: SoakConfig
        let gateway: SoakGatewayLayout
        let stub: StubUpstream
        let client: HTTPClient
        let tally: SoakTally
        let seed: UInt64

        func run(until deadline: ContinuousClock.Instant) async {
            var random = SplitMix64(seed: seed)
            let routers =
                (layout.binaryRouters.map { ($0.name, [$0.strongModel, $0.weakModel]) }
                + layout.lambdaRouters.map { ($0.name, $0.candidates) }).map { name, candidates in
                    (name, candidates.map { gateway.canonical[$0] ?? $0 })
                }
            let url = "http://127.0.0.1:\(gateway.port)/v1/chat/completions"
            var sent = 0
            while ContinuousClock.now < deadline {
                sent += 1
                // Every 50 requests, a different model misbehaves in a different way.
                if sent % 50 == 0 { faultNext(&random) }
                let draw = Double.random(in: 0..<1, using: &random)
                let (router, candidates) = routers[Int(random.next() % UInt64(routers.count))]
                let prompt = draw < 0.5 ? SoakPrompts.repeated(&random) : SoakPrompts.fresh(&random, tag: "gw\(sent)")
                let escaped = String(decoding: (try? JSONEncoder().encode(prompt)) ?? Data("\"?\"".utf8), as: UTF8.self)
                switch draw {
                case ..<0.70:
                    await expectServed(
                        url, #"{"model":"router-\#(router)","messages":[{"role":"user","content":\#(escaped)}]}"#, candidates, stream: false)
                case ..<0.90:
                    await expectServed(
                        url, #"{"model":"router-\#(router)","stream":true,"messages":[{"role":"user","content":\#(escaped)}]}"#, candidates,
                        stream: true)
                case ..<0.95:
                    await expectStatus(url, #"{"model":"router-\#(router)","messages":"#, 400, "bad JSON")
                default:
                    await expectStatus(url, #"{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}"#, 404, "an unknown model")
                }
            }
            for name in gateway.stubNames.values { stub.set(name, .healthy) }
        }

        private func faultNext(_ random: inout SplitMix64) {
            for name in gateway.stubNames.values { stub.set(name, .healthy) }
            let names = gateway.stubNames.values.sorted()
            let victim = names[Int(random.next() % UInt64(names.count))]
            let faults: [StubUpstream.Behaviour] = [.serverError, .rateLimited(retryAfter: 0), .hang, .dropMidStream, .malformed]
            stub.set(victim, faults[Int(random.next() % UInt64(faults.count))])
        }

        private func post(_ url: String, _ body: String) async -> (status: Int, headers: HTTPHeaders, body: String)? {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
            do {
                let response = try await client.execute(request, timeout: .seconds(30))
                let bytes = try await response.body.collect(upTo: 1 << 22)
                return (Int(response.status.code), response.headers, String(buffer: bytes))
            } catch {
                tally.unexpected("gateway: \(error)")
                return nil
            }
        }

        /// A routed request: answered with 200 by one of the router's candidates (a stream cut
        /// mid-way by its upstream ends with an error event, which counts as expected).
        private func expectServed(_ url: String, _ body: String, _ candidates: [String], stream: Bool) async {
            tally.count(stream ? "gateway stream" : "gateway")
            guard let reply = await post(url, body) else { return }
            guard reply.status == 200, let served = reply.headers.first(name: "x-routerd-model"),
                candidates.contains(gateway.canonical[served] ?? served)
            else {
                tally.unexpected("gateway: \(reply.status) \(reply.headers.first(name: "x-routerd-model") ?? "-"): \(reply.body.prefix(300))")
                return
            }
            if stream, !reply.body.hasSuffix("data: [DONE]\n\n") {
                if reply.body.contains(#""code":"mid_stream""#) {
                    tally.expectedError("gateway mid_stream")
                } else {
                    tally.unexpected("gateway: a stream that neither ended nor said why: \(reply.body.suffix(300))")
                }
            }
        }

        private func expectStatus(_ url: String, _ body: String, _ status: Int, _ what: String) async {
            tally.count("gateway refused")
            guard let reply = await post(url, body) else { return }
            if reply.status == status, reply.body.contains(#""error""#) {
                tally.expectedError("gateway \(status)")
            } else {
                tally.unexpected("gateway: \(what) got \(reply.status): \(reply.body.prefix(300))")
            }
        }
    }
#endif
