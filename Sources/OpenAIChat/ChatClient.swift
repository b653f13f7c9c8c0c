import Foundation
import OpenAIProtocol

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Where a chat model is served: an OpenAI-compatible `/chat/completions` endpoint.
public struct ChatEndpoint: Sendable, Hashable {
    /// Up to and including the version, e.g. `http://127.0.0.1:8080/v1`.
    public var baseURL: String
    /// The model name the endpoint expects.
    public var model: String
    /// Sent as `Authorization: Bearer …` when set.
    public var apiKey: String?
    /// The longest answer to ask for, in tokens.
    public var maxTokens: Int

    public init(baseURL: String, model: String, apiKey: String? = nil, maxTokens: Int) {
        self.baseURL = baseURL
        self.model = model
        self.apiKey = apiKey
        self.maxTokens = maxTokens
    }
}

/// One turn of a chat: a role and its text.
public struct ChatTurn: Codable, Sendable, Hashable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// An answer and the tokens it cost, from the reply's `usage`.
public struct ChatReply: Sendable, Hashable {
    public var text: String
    public var promptTokens: Int
    public var completionTokens: Int
}

/// Why a chat call failed, after its retries.
public struct ChatError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// Whether another try may succeed (a timeout, 429 or 5xx).
    public var transient: Bool
    public init(_ message: String, transient: Bool) {
        self.message = message
        self.transient = transient
    }
    public var description: String { message }
}

/// Calls chat endpoints with a deadline per call, bounded concurrency per endpoint, and retries
/// with exponential backoff (and jitter) on timeouts, 429 and 5xx. Uses Foundation's URLSession,
/// as the `causal_llm` plugin does, so no HTTP stack is added for it.
public final class ChatClient: Sendable {
    private let session: URLSession
    private let timeout: Double
    private let retries: Int
    private let slots: Slots

    /// - Parameters:
    ///   - concurrency: calls in flight per endpoint (per base URL).
    ///   - timeout: seconds per call.
    ///   - retries: further tries of a call that failed transiently.
    public init(concurrency: Int, timeout: Double, retries: Int) {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = concurrency
        configuration.timeoutIntervalForRequest = timeout
        session = URLSession(configuration: configuration)
        self.timeout = timeout
        self.retries = retries
        slots = Slots(perKey: concurrency)
    }

    deinit { session.invalidateAndCancel() }

    public func complete(_ messages: [ChatTurn], on endpoint: ChatEndpoint, temperature: Double = 0) async throws(ChatError) -> ChatReply {
        var attempt = 0
        while true {
            await slots.acquire(endpoint.baseURL)
            let result: Result<ChatReply, ChatError>
            do throws(ChatError) {
                result = .success(try await call(messages, on: endpoint, temperature: temperature))
            } catch {
                result = .failure(error)
            }
            await slots.release(endpoint.baseURL)
            switch result {
            case .success(let reply): return reply
            case .failure(let error): guard error.transient, attempt < retries else { throw error }
            }
            attempt += 1
            // 0.5 s, 1 s, 2 s, … with up to 50% jitter, so retries from many callers spread out.
            let delay = 0.5 * pow(2, Double(attempt - 1)) * Double.random(in: 1...1.5)
            try? await Task.sleep(for: .milliseconds(Int(delay * 1000)))
        }
    }

    private struct Body: Encodable {
        var model: String
        var messages: [ChatTurn]
        var max_tokens: Int
        var temperature: Double
    }

    private struct Completion: Decodable {
        struct Choice: Decodable {
            struct Message: Decodable { var content: String? }
            var message: Message
        }
        var choices: [Choice]
    }

    private func call(_ messages: [ChatTurn], on endpoint: ChatEndpoint, temperature: Double) async throws(ChatError) -> ChatReply {
        let base = endpoint.baseURL.hasSuffix("/") ? String(endpoint.baseURL.dropLast()) : endpoint.baseURL
        guard let url = URL(string: base + "/chat/completions") else { throw ChatError("bad base_url '\(endpoint.baseURL)'", transient: false) }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let key = endpoint.apiKey { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try? JSONEncoder().encode(
            Body(model: endpoint.model, messages: messages, max_tokens: endpoint.maxTokens, temperature: temperature))
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(for: request)
        } catch {
            throw ChatError("\(url): \(error.localizedDescription)", transient: true)
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            let body = String(decoding: data.prefix(300), as: UTF8.self)
            throw ChatError("\(url): HTTP \(status): \(body)", transient: status == 429 || status >= 500)
        }
        guard let completion = try? JSONDecoder().decode(Completion.self, from: data), let first = completion.choices.first else {
            throw ChatError("\(url): not a chat completion: \(String(decoding: data.prefix(300), as: UTF8.self))", transient: false)
        }
        let usage = Usage(responseBody: data)
        return ChatReply(text: first.message.content ?? "", promptTokens: usage?.promptTokens ?? 0, completionTokens: usage?.completionTokens ?? 0)
    }
}

/// A counting semaphore per key, for async callers.
private actor Slots {
    private let perKey: Int
    private var used: [String: Int] = [:]
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    init(perKey: Int) { self.perKey = max(1, perKey) }

    func acquire(_ key: String) async {
        if used[key, default: 0] < perKey {
            used[key, default: 0] += 1
            return
        }
        await withCheckedContinuation { waiting[key, default: []].append($0) }
    }

    func release(_ key: String) {
        if var queue = waiting[key], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[key] = queue
            next.resume()  // the slot passes straight to the next caller
        } else {
            used[key, default: 1] -= 1
        }
    }
}
