import CRouterPlugin
import Foundation
import RouterJSON
import RouterPluginKit
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// RouteLLM's causal-LLM router, over any OpenAI-compatible chat endpoint.
///
/// The LLM sees a system message and the prompt, and answers with a rating 1–5
/// of how well the weak model would handle it. With the logprobs of the rating
/// tokens, P(rating = k) is their softmax and P(strong wins) = 1 − P(rating ≥ 4),
/// as in the paper. Anything else (a timeout, an HTTP error, output with no
/// rating) takes the configured fallback and is counted as an event.
final class CausalLLMRouter: RouterPlugin {
    static let name = "causal_llm"
    static let version = "1.0.0"

    /// Our wording of RouteLLM's intent: rate how well a small model would answer.
    static let defaultTemplate = """
        You triage requests sent to an AI assistant. The assistant is a small, \
        inexpensive language model: fluent, but weak at hard reasoning, \
        mathematics, code and specialist knowledge. Judge how well it would answer \
        the request, on a scale of 1 to 5:
        1 = it would almost certainly fail;
        2 = it would probably fail;
        3 = it might or might not succeed;
        4 = it would probably answer well;
        5 = it would certainly answer well.
        Reply with the single digit only.
        ---
        Request:
        {prompt}

        Rating (1-5):
        """

    enum Fallback: String {
        case strong, weak, error
    }

    private let endpoint: URL
    private let model: String
    private let apiKey: String?
    private let timeout: Double
    private let fallback: Fallback
    private let system: String
    private let user: String
    private let topLogprobs: Int
    private let maxConcurrency: Int
    private let slots: DispatchSemaphore
    private let session: URLSession
    private let host: HostServices

    init(context: PluginContext) throws {
        let params = context.params
        guard let base = params.string("base_url"), let url = URL(string: base), let scheme = url.scheme, ["http", "https"].contains(scheme)
        else {
            throw PluginError("base_url must be an http(s) URL such as http://127.0.0.1:8080/v1, not '\(params.string("base_url") ?? "")'")
        }
        endpoint = url.appendingPathComponent("chat/completions")
        guard let model = params.string("model"), !model.isEmpty else { throw PluginError("missing parameter 'model'") }
        self.model = model
        if let variable = params.string("api_key_env") {
            guard let key = ProcessInfo.processInfo.environment[variable], !key.isEmpty else {
                throw PluginError("api_key_env names \(variable), which is not set in routerd's environment")
            }
            // A key sent in clear crosses the network readable by anyone on the path; on loopback it
            // stays on this host. Anything else needs https, or an explicit `allow_plain_http_key`.
            if scheme == "http", !Self.isLoopback(url.host ?? ""), params.bool("allow_plain_http_key") != true {
                throw PluginError(
                    "base_url \(base) is plain http to a host that is not loopback, and api_key_env would send the key in clear; use https, or set allow_plain_http_key: true if the network path is trusted"
                )
            }
            apiKey = key
        } else {
            apiKey = nil
        }
        timeout = params.double("timeout") ?? 10
        guard timeout > 0, timeout.isFinite else { throw PluginError("timeout must be a positive number of seconds") }
        maxConcurrency = params.int("max_concurrency") ?? 4
        guard maxConcurrency >= 1 else { throw PluginError("max_concurrency must be at least 1") }
        guard let fallback = Fallback(rawValue: params.string("fallback") ?? "strong") else {
            throw PluginError("fallback must be strong, weak or error, not '\(params.string("fallback") ?? "")'")
        }
        self.fallback = fallback
        topLogprobs = params.int("top_logprobs") ?? 10
        guard (1...20).contains(topLogprobs) else { throw PluginError("top_logprobs must be between 1 and 20 (OpenAI's limit)") }
        var template = Self.defaultTemplate
        if let path = params.string("template") {
            guard let data = FileManager.default.contents(atPath: path) else { throw PluginError("cannot read the template \(path)") }
            template = String(decoding: data, as: UTF8.self)
        }
        let lines = template.components(separatedBy: "\n")
        guard let separator = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "---" }) else {
            throw PluginError("the template needs a line holding only --- between the system message and the user message")
        }
        system = lines[..<separator].joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        user = lines[(separator + 1)...].joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        guard user.contains("{prompt}") else { throw PluginError("the template's user message must contain {prompt}") }
        slots = DispatchSemaphore(value: maxConcurrency)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = maxConcurrency
        session = URLSession(configuration: configuration)
        host = context.host
    }

    deinit { session.invalidateAndCancel() }

    func score(_ prompt: Prompt) throws -> Double {
        try score(text: prompt.text)
    }

    /// Overlaps up to max_concurrency calls: that many workers take the prompts in turn.
    /// (`concurrentPerform` would cap the overlap at the CPU count, which is no bound on waiting.)
    func score(batch prompts: [Prompt]) throws -> [Double] {
        let texts = prompts.map(\.text)
        let results = ResultBox(count: texts.count)
        let workers = DispatchGroup()
        for _ in 0..<min(maxConcurrency, texts.count) {
            DispatchQueue.global().async(group: workers) {
                while let index = results.claim() { results.set(index, Result { try self.score(text: texts[index]) }) }
            }
        }
        workers.wait()
        return try results.values.map { try $0!.get() }
    }

    private func score(text: String) throws -> Double {
        let deadline = DispatchTime.now() + timeout
        guard slots.wait(timeout: deadline) == .success else {
            return try fail("busy", "no request slot freed within \(timeout) s (max_concurrency \(maxConcurrency))")
        }
        defer { slots.signal() }
        let response: Response
        do {
            response = try call(text: text, deadline: deadline)
        } catch {
            return try fail(error.event, error.message)
        }
        guard let distribution = Self.ratingDistribution(response) else {
            return try fail("invalid_output", "the reply holds no rating 1-5: \(response.content.prefix(80).debugDescription)")
        }
        if !response.hadLogprobs { host.count("no_logprobs") }
        // P(strong wins) = 1 − P(rating ≥ 4): the weak model is expected to do well only at 4 or 5.
        return max(0, min(1, 1 - distribution[3] - distribution[4]))
    }

    /// Applies the fallback policy, counting the event.
    private func fail(_ event: String, _ message: String) throws -> Double {
        host.count("fallback.\(event)")
        switch fallback {
        case .strong: return 1
        case .weak: return 0
        case .error:
            // The endpoint and what it answered go to routerd's log, for the operator; the client
            // that asked learns only what kind of failure it was (they can hold hosts, keys' hints,
            // or another request's text).
            host.log(.warning, "causal_llm: \(endpoint.absoluteString): \(message)")
            throw PluginError("the LLM endpoint failed (\(event)); routerd's log has the details")
        }
    }

    /// Whether `host` names this machine (127.0.0.0/8, ::1, localhost).
    static func isLoopback(_ host: String) -> Bool {
        let name = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        return name == "localhost" || name == "::1" || name.hasPrefix("127.")
    }

    struct CallFailure: Error {
        var event: String
        var message: String
    }

    /// The first choice's text, and per output token its alternatives with logprobs.
    struct Response {
        var content: String
        var alternatives: [[(token: String, logprob: Double)]]
        var hadLogprobs: Bool
    }

    private func call(text: String, deadline: DispatchTime) throws(CallFailure) -> Response {
        let body: [String: Any] = [
            "model": model,
            "messages": [
                ["role": "system", "content": system], ["role": "user", "content": user.replacingOccurrences(of: "{prompt}", with: text)],
            ],
            "max_tokens": 3, "temperature": 0, "logprobs": true, "top_logprobs": topLogprobs,
        ]
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try? JSONSerialization.data(withJSONObject: body)
        let remaining = Double(deadline.uptimeNanoseconds &- DispatchTime.now().uptimeNanoseconds) / 1e9
        request.timeoutInterval = max(remaining, 0.001)

        let outcome = OutcomeBox()
        let done = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: request) { data, response, error in
            outcome.set(data: data, response: response, error: error)
            done.signal()
        }
        task.resume()
        guard done.wait(timeout: deadline) == .success else {
            task.cancel()
            throw CallFailure(event: "timeout", message: "no reply within \(timeout) s")
        }
        let (data, response, error) = outcome.get()
        if let error {
            let timedOut = (error as? URLError)?.code == .timedOut
            throw CallFailure(event: timedOut ? "timeout" : "unreachable", message: error.localizedDescription)
        }
        guard let http = response as? HTTPURLResponse, let data else { throw CallFailure(event: "http_error", message: "no HTTP response") }
        guard http.statusCode == 200 else {
            let snippet = String(decoding: data.prefix(200), as: UTF8.self)
            throw CallFailure(event: "http_error", message: "HTTP \(http.statusCode): \(snippet)")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let choice = (object["choices"] as? [[String: Any]])?.first,
            let message = choice["message"] as? [String: Any]
        else { throw CallFailure(event: "invalid_output", message: "the reply is not a chat completion") }
        let content = message["content"] as? String ?? ""
        let tokens = ((choice["logprobs"] as? [String: Any])?["content"] as? [[String: Any]]) ?? []
        let alternatives = tokens.map { token -> [(token: String, logprob: Double)] in
            var list = (token["top_logprobs"] as? [[String: Any]] ?? []).compactMap { entry -> (String, Double)? in
                guard let text = entry["token"] as? String, let logprob = (entry["logprob"] as? NSNumber)?.doubleValue else { return nil }
                return (text, logprob)
            }
            if list.isEmpty, let text = token["token"] as? String, let logprob = (token["logprob"] as? NSNumber)?.doubleValue {
                list = [(text, logprob)]
            }
            return list
        }
        return Response(content: content, alternatives: alternatives, hadLogprobs: !tokens.isEmpty)
    }

    /// P(rating = 1…5): the softmax of the rating tokens' logprobs at the first
    /// output position that offers any (a leading space or newline token may come
    /// first); without logprobs, all mass on the first digit 1–5 of the text.
    static func ratingDistribution(_ response: Response) -> [Double]? {
        for position in response.alternatives {
            var logits = [Double?](repeating: nil, count: 5)
            for (token, logprob) in position {
                guard let rating = Int(token.trimmingCharacters(in: .whitespacesAndNewlines)), (1...5).contains(rating), logprob.isFinite else {
                    continue
                }
                // The same digit may come as "4" and " 4": their probabilities add.
                logits[rating - 1] = logits[rating - 1].map { log(exp($0) + exp(logprob)) } ?? logprob
            }
            let present = logits.compactMap { $0 }
            guard let top = present.max() else { continue }
            let weights = logits.map { $0.map { exp($0 - top) } ?? 0 }
            let total = weights.reduce(0, +)
            return weights.map { $0 / total }
        }
        if let digit = response.content.first(where: { ("1"..."5").contains($0) }), let rating = Int(String(digit)) {
            return (1...5).map { $0 == rating ? 1 : 0 }
        }
        return nil
    }

    func describe() -> RouterDescription {
        RouterDescription(details: [
            "endpoint": .string(endpoint.absoluteString), "model": .string(model), "timeout": .number(timeout),
            "max_concurrency": .integer(Int64(maxConcurrency)), "fallback": .string(fallback.rawValue),
        ])
    }
}

/// A URLSession reply, handed from its callback thread to the waiting caller.
private final class OutcomeBox: Sendable {
    private struct Reply: Sendable {
        var data: Data?
        var response: URLResponse?
        var error: (any Error)?
    }
    private let reply = Mutex(Reply())

    func set(data: Data?, response: URLResponse?, error: (any Error)?) {
        reply.withLock { $0 = Reply(data: data, response: response, error: error) }
    }

    func get() -> (Data?, URLResponse?, (any Error)?) {
        reply.withLock { ($0.data, $0.response, $0.error) }
    }
}

/// Per-index results of a concurrent batch, and the next index to score.
private final class ResultBox: Sendable {
    private struct State {
        var storage: [Result<Double, any Error>?]
        var next = 0
    }
    private let state: Mutex<State>

    init(count: Int) { state = Mutex(State(storage: Array(repeating: nil, count: count))) }

    /// The next unscored index, or nil when every one is taken.
    func claim() -> Int? {
        state.withLock { state in
            guard state.next < state.storage.count else { return nil }
            defer { state.next += 1 }
            return state.next
        }
    }

    func set(_ index: Int, _ result: Result<Double, any Error>) {
        state.withLock { $0.storage[index] = result }
    }

    var values: [Result<Double, any Error>?] { state.withLock { $0.storage } }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(CausalLLMRouter.self, hostABI: hostABI, into: out, size: size)
}
