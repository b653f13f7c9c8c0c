import Foundation
import RouterJSON
import RouterVocabulary

/// The operations a request may name in `op`.
public enum Op: String, Codable, Sendable, CaseIterable {
    case route, score, embed, feedback, learn, routers, health, status, stats, reload, set

    /// Admin ops change the daemon and need an admin peer (`learn` only with action `reset`).
    public var isAdmin: Bool { self == .reload || self == .set }
}

/// A chat message as OpenAI-style clients send it.
public struct ChatMessage: Codable, Sendable, Hashable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// `route`: decide which candidate model answers one prompt.
public struct RouteRequest: Sendable, Hashable {
    public var router: String
    public var prompt: String
    /// Overrides the router's policy for this request only: at most one of these is set.
    public var threshold: Double?
    public var lambda: Double?
    public var cheapestWithin: Double?
    /// The number of a `router-<name>-<number>` model name: the router's own knob (its threshold, λ or ε).
    public var modelNameValue: Double?
    /// A conversation's id: its first decision sticks, later turns may only move to a dearer model.
    public var session: String?

    public init(
        router: String, prompt: String, threshold: Double? = nil, lambda: Double? = nil, cheapestWithin: Double? = nil,
        modelNameValue: Double? = nil, session: String? = nil
    ) {
        self.router = router
        self.prompt = prompt
        self.threshold = threshold
        self.lambda = lambda
        self.cheapestWithin = cheapestWithin
        self.modelNameValue = modelNameValue
        self.session = session
    }
}

/// `score`: P(strong wins) for a batch of prompts, without a decision.
public struct ScoreRequest: Sendable, Hashable {
    public var router: String
    public var prompts: [String]

    public init(router: String, prompts: [String]) {
        self.router = router
        self.prompts = prompts
    }
}

/// `embed`: sentence embeddings (and optionally token ids) of texts.
public struct EmbedRequest: Sendable, Hashable {
    /// The encoder; may be omitted when exactly one is configured.
    public var encoder: String?
    public var texts: [String]
    /// Also return the token ids the model saw.
    public var tokens: Bool
    /// Overrides the encoder's long-text policy: head, tail or windows.
    public var longText: LongTextPolicy?

    public init(encoder: String? = nil, texts: [String], tokens: Bool = false, longText: LongTextPolicy? = nil) {
        self.encoder = encoder
        self.texts = texts
        self.tokens = tokens
        self.longText = longText
    }
}

/// `reload`: re-read the config and swap in a new generation, or with `dryRun` only validate it.
public struct ReloadRequest: Sendable, Hashable {
    public var dryRun: Bool

    public init(dryRun: Bool = false) { self.dryRun = dryRun }
}

/// `set`: change a router's threshold, or its share of strong traffic, on the live daemon.
/// The config file is not touched: the next reload restores the file's value.
public struct SetRequest: Sendable, Hashable {
    public var router: String
    public var threshold: Double?
    public var strongFraction: Double?

    public init(router: String, threshold: Double? = nil, strongFraction: Double? = nil) {
        self.router = router
        self.threshold = threshold
        self.strongFraction = strongFraction
    }
}

/// `feedback`: how a model did on a routed prompt, named by its decision or by router and prompt.
public struct FeedbackRequest: Sendable, Hashable {
    public enum Subject: Sendable, Hashable {
        case decision(id: String)
        case prompt(router: String, text: String)
    }

    public enum Value: Sendable, Hashable {
        /// `outcome` (win, loss or tie) of `model` against `against`.
        case pairwise(outcome: PairwiseResult, against: String)
        /// `quality` in [0, 1].
        case pointwise(quality: Double)
        /// `outcome: failed`: the model's call failed (an error, a timeout, a refusal). It teaches
        /// as quality 0 and is counted apart.
        case failed
    }

    public var subject: Subject
    public var model: String
    public var value: Value

    public init(subject: Subject, model: String, value: Value) {
        self.subject = subject
        self.model = model
        self.value = value
    }
}

/// `learn`: online learning's state (`status`), or forgetting what a router learned (`reset`, admin).
public struct LearnRequest: Sendable, Hashable {
    public enum Action: String, Sendable, Hashable, CaseIterable {
        case status, reset
    }

    public var action: Action
    /// The router; for `status` it may be omitted (every router that learns online).
    public var router: String?

    public init(action: Action, router: String? = nil) {
        self.action = action
        self.router = router
    }
}

/// A decoded request.
public enum Request: Sendable, Hashable {
    case route(RouteRequest)
    case score(ScoreRequest)
    case embed(EmbedRequest)
    case feedback(FeedbackRequest)
    case learn(LearnRequest)
    case routers
    case health
    case status
    case stats
    case reload(ReloadRequest)
    case set(SetRequest)

    /// Whether this request needs an admin peer.
    public var needsAdmin: Bool {
        if case .learn(let learn) = self { return learn.action == .reset }
        return op.isAdmin
    }

    public var op: Op {
        switch self {
        case .route: return .route
        case .score: return .score
        case .embed: return .embed
        case .feedback: return .feedback
        case .learn: return .learn
        case .routers: return .routers
        case .health: return .health
        case .status: return .status
        case .stats: return .stats
        case .reload: return .reload
        case .set: return .set
        }
    }
}

/// A request line after decoding: its `id` (when one could be read) and
/// either the request or the error to answer with.
public struct DecodedRequest: Sendable {
    public var id: RequestID?
    public var op: Op?
    public var outcome: Result<Request, ProtocolError>
}

/// Encodes and decodes request lines.
public enum RequestCodec {
    /// Decodes one request line (without its newline).
    public static func decode(_ line: Data) -> DecodedRequest {
        if String(validating: line, as: UTF8.self) == nil {
            return DecodedRequest(id: nil, op: nil, outcome: .failure(ProtocolError(.badJSON, "request line is not valid UTF-8")))
        }
        do {
            let wire = try JSONDecoder().decode(WireRequest.self, from: line)
            return DecodedRequest(id: wire.id, op: wire.op, outcome: wire.outcome)
        } catch DecodingError.typeMismatch {
            return DecodedRequest(id: nil, op: nil, outcome: .failure(ProtocolError(.badJSON, "a request must be a JSON object")))
        } catch {
            return DecodedRequest(id: nil, op: nil, outcome: .failure(ProtocolError(.badJSON, "request is not valid JSON: \(jsonProblem(error))")))
        }
    }

    /// Encodes a request as one line, newline included.
    public static func encode(_ request: Request, id: RequestID?) throws -> Data {
        var data = try encoder.encode(WireRequestOut(id: id, request: request))
        data.append(0x0A)
        return data
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// The most specific description Foundation gives of a JSON syntax error.
    private static func jsonProblem(_ error: any Error) -> String {
        guard case DecodingError.dataCorrupted(let context) = error else { return "\(error)" }
        if let underlying = context.underlyingError as NSError?,
            let detail = underlying.userInfo[NSDebugDescriptionErrorKey] as? String
        {
            return detail
        }
        return context.debugDescription
    }
}

/// Any string as a coding key.
struct FieldKey: CodingKey, Hashable {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// The request as it is on the wire. Decoding never throws past the top
/// level: a problem with a field becomes `outcome`, so the `id` read first
/// is still echoed in the error response.
private struct WireRequest: Decodable {
    var id: RequestID?
    var op: Op?
    var outcome: Result<Request, ProtocolError>

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: FieldKey.self)
        var reader = FieldReader(container: fields)
        do {
            id = try reader.optional(RequestID.self, "id", expected: "a string or a number")
            guard let opName = try reader.optional(String.self, "op", expected: "a string") else {
                throw ProtocolError(.missingField, "missing field 'op' (one of: \(Op.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let op = Op(rawValue: opName) else {
                throw ProtocolError(.unknownOp, "unknown op '\(opName)' (known ops: \(Op.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            self.op = op
            outcome = .success(try Self.body(op, &reader))
        } catch let error as ProtocolError {
            outcome = .failure(error)
        }
    }

    private static func body(_ op: Op, _ reader: inout FieldReader) throws -> Request {
        switch op {
        case .route: return .route(try route(&reader))
        case .score:
            let router = try reader.required(String.self, "router", expected: "a string")
            let prompts = try reader.required([String].self, "prompts", expected: "a list of strings")
            return .score(ScoreRequest(router: router, prompts: prompts))
        case .embed:
            let encoder = try reader.optional(String.self, "encoder", expected: "a string")
            let texts: [String]
            if let text = try reader.optional(String.self, "text", expected: "a string") {
                texts = [text]
            } else if let list = try reader.optional([String].self, "texts", expected: "a list of strings") {
                texts = list
            } else {
                throw ProtocolError(.missingField, "missing field 'text' (or 'texts')")
            }
            let tokens = try reader.optional(Bool.self, "tokens", expected: "true or false") ?? false
            let longText = try reader.optional(String.self, "long_text", expected: "a string").map { name throws(ProtocolError) in
                guard let policy = LongTextPolicy(rawValue: name) else {
                    throw ProtocolError(.badField, "field 'long_text' must be head, tail or windows, found '\(name)'")
                }
                return policy
            }
            return .embed(EmbedRequest(encoder: encoder, texts: texts, tokens: tokens, longText: longText))
        case .feedback: return .feedback(try feedback(&reader))
        case .learn:
            let name = try reader.optional(String.self, "action", expected: "a string") ?? "status"
            guard let action = LearnRequest.Action(rawValue: name) else {
                throw ProtocolError(.badField, "field 'action' must be status or reset, found '\(name)'")
            }
            let router = try reader.optional(String.self, "router", expected: "a string")
            if action == .reset, router == nil { throw ProtocolError(.missingField, "missing field 'router' (the router whose learning to reset)") }
            return .learn(LearnRequest(action: action, router: router))
        case .routers: return .routers
        case .health: return .health
        case .status: return .status
        case .stats: return .stats
        case .reload:
            return .reload(ReloadRequest(dryRun: try reader.optional(Bool.self, "dry_run", expected: "true or false") ?? false))
        case .set:
            let router = try reader.required(String.self, "router", expected: "a string")
            let threshold = try reader.optional(Double.self, "threshold", expected: "a number")
            let fraction = try reader.optional(Double.self, "strong_fraction", expected: "a number")
            guard (threshold == nil) != (fraction == nil) else {
                throw ProtocolError(.badField, "give exactly one of 'threshold' and 'strong_fraction'")
            }
            for (name, value) in [("threshold", threshold), ("strong_fraction", fraction)] {
                if let value, !(0...1).contains(value) {
                    throw ProtocolError(.badField, "field '\(name)' must be between 0 and 1, found \(value)")
                }
            }
            return .set(SetRequest(router: router, threshold: threshold, strongFraction: fraction))
        }
    }

    private static func feedback(_ reader: inout FieldReader) throws -> FeedbackRequest {
        let decisionID = try reader.optional(String.self, "decision_id", expected: "a string")
        let router = try reader.optional(String.self, "router", expected: "a string")
        let prompt = try reader.optional(String.self, "prompt", expected: "a string")
        let subject: FeedbackRequest.Subject
        switch (decisionID, router, prompt) {
        case (let id?, nil, nil): subject = .decision(id: id)
        case (nil, let router?, let prompt?): subject = .prompt(router: router, text: prompt)
        case (nil, nil, nil): throw ProtocolError(.missingField, "missing field 'decision_id' (or 'router' and 'prompt')")
        case (nil, _, _): throw ProtocolError(.missingField, "feedback about a prompt needs both 'router' and 'prompt'")
        default: throw ProtocolError(.badField, "give either 'decision_id' or 'router' and 'prompt', not both")
        }
        let model = try reader.required(String.self, "model", expected: "a string, the model the outcome is about")
        let outcome = try reader.optional(String.self, "outcome", expected: "a string")
        let quality = try reader.optional(Double.self, "quality", expected: "a number")
        let against = try reader.optional(String.self, "against", expected: "a string")
        switch (outcome, quality) {
        case ("failed", nil):
            if against != nil { throw ProtocolError(.badField, "field 'against' goes with win, loss or tie, not with 'failed'") }
            return FeedbackRequest(subject: subject, model: model, value: .failed)
        case (let name?, nil):
            guard let outcome = PairwiseResult(rawValue: name) else {
                throw ProtocolError(.badField, "field 'outcome' must be win, loss, tie or failed, found '\(name)'")
            }
            guard let against else {
                let verb =
                    switch outcome {
                    case .tie: "tied with"
                    case .win: "beat"
                    case .loss: "lost to"
                    }
                throw ProtocolError(.missingField, "missing field 'against' (the model '\(model)' \(verb))")
            }
            guard against != model else { throw ProtocolError(.badField, "fields 'model' and 'against' name the same model '\(model)'") }
            return FeedbackRequest(subject: subject, model: model, value: .pairwise(outcome: outcome, against: against))
        case (nil, let quality?):
            guard (0...1).contains(quality) else { throw ProtocolError(.badField, "field 'quality' must be between 0 and 1, found \(quality)") }
            if against != nil { throw ProtocolError(.badField, "field 'against' goes with 'outcome', not with 'quality'") }
            return FeedbackRequest(subject: subject, model: model, value: .pointwise(quality: quality))
        case (nil, nil):
            throw ProtocolError(.missingField, "missing field 'outcome' (win, loss or tie, with 'against'; or failed) or 'quality' (0 to 1)")
        default: throw ProtocolError(.badField, "give either 'outcome' or 'quality', not both")
        }
    }

    private static func route(_ reader: inout FieldReader) throws -> RouteRequest {
        var router = try reader.optional(String.self, "router", expected: "a string")
        let threshold = try reader.optional(Double.self, "threshold", expected: "a number")
        let lambda = try reader.optional(Double.self, "lambda", expected: "a number")
        let cheapestWithin = try reader.optional(Double.self, "cheapest_within", expected: "a number")
        let overrides = [("threshold", threshold), ("lambda", lambda), ("cheapest_within", cheapestWithin)].filter { $0.1 != nil }
        if overrides.count > 1 {
            throw ProtocolError(.badField, "give at most one of 'threshold', 'lambda' and 'cheapest_within'")
        }
        if let threshold, !(0...1).contains(threshold) {
            throw ProtocolError(.badField, "field 'threshold' must be between 0 and 1, found \(threshold)")
        }
        for (name, value) in [("lambda", lambda), ("cheapest_within", cheapestWithin)] {
            if let value, !(value >= 0 && value.isFinite) {
                throw ProtocolError(.badField, "field '\(name)' must be a number ≥ 0, found \(value)")
            }
        }
        var modelNameValue: Double?
        // RouteLLM clients name the router and its knob in the model: router-<name>-<threshold or λ>.
        if let model = try reader.optional(String.self, "model", expected: "a string") {
            guard let parsed = RouterModelName(model) else {
                throw ProtocolError(.badField, "field 'model' must have the form router-<name>-<number>, found '\(model)'")
            }
            if let router, router != parsed.router {
                throw ProtocolError(.badField, "field 'model' names router '\(parsed.router)' but field 'router' is '\(router)'")
            }
            router = parsed.router
            if overrides.isEmpty { modelNameValue = parsed.value }
        }
        guard let router else {
            throw ProtocolError(.missingField, "missing field 'router' (or a 'model' of the form router-<name>-<number>)")
        }
        let session = try reader.optional(String.self, "session", expected: "a string")
        if let session, session.isEmpty || session.utf8.count > 256 {
            throw ProtocolError(.badField, "field 'session' must be a non-empty string of at most 256 bytes")
        }
        let prompt: String
        if let text = try reader.optional(String.self, "prompt", expected: "a string") {
            prompt = text
        } else if let messages = try reader.optional([WireMessage].self, "messages", expected: "a list of {role, content} objects") {
            // As RouteLLM does: route on the last user turn.
            guard let last = messages.last(where: { $0.role == "user" }) else {
                throw ProtocolError(.badField, "field 'messages' has no message with role 'user'")
            }
            prompt = last.text
        } else {
            throw ProtocolError(.missingField, "missing field 'prompt' (or 'messages')")
        }
        return RouteRequest(
            router: router, prompt: prompt, threshold: threshold, lambda: lambda, cheapestWithin: cheapestWithin, modelNameValue: modelNameValue,
            session: session)
    }
}

/// Reads fields with errors in protocol terms.
private struct FieldReader {
    var container: KeyedDecodingContainer<FieldKey>

    func optional<T: Decodable>(_ type: T.Type, _ name: String, expected: String) throws -> T? {
        let key = FieldKey(name)
        guard container.contains(key), (try? container.decodeNil(forKey: key)) != true else { return nil }
        do {
            return try container.decode(T.self, forKey: key)
        } catch let error as ProtocolError {
            throw error
        } catch {
            throw ProtocolError(.badField, "field '\(name)' must be \(expected)")
        }
    }

    func required<T: Decodable>(_ type: T.Type, _ name: String, expected: String) throws -> T {
        guard let value = try optional(type, name, expected: expected) else {
            throw ProtocolError(.missingField, "missing field '\(name)' (\(expected))")
        }
        return value
    }
}

/// An OpenAI-style message whose content is a string or a list of parts.
private struct WireMessage: Decodable {
    var role: String
    var text: String

    enum CodingKeys: String, CodingKey { case role, content }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        role = try container.decode(String.self, forKey: .role)
        guard let text = ChatMessageText.text(of: try container.decode(JSONValue.self, forKey: .content)) else {
            throw DecodingError.dataCorruptedError(forKey: .content, in: container, debugDescription: "not a string or content parts")
        }
        self.text = text
    }
}

/// A chat message's text as routing reads it, in the socket's `route` with `messages` and in the
/// gateway's chat completions alike: `content` as a string, or the text of its `{"type": "text",
/// "text": …}` parts joined by newlines (other parts, such as images, are skipped).
public enum ChatMessageText {
    /// The text of `content`; nil when it is neither a string nor a list of part objects.
    public static func text(of content: JSONValue) -> String? {
        switch content {
        case .string(let text):
            return text
        case .array(let parts):
            var texts: [String] = []
            for part in parts {
                guard case .object(let members) = part else { return nil }
                if members["type"] == .string("text"), case .string(let text)? = members["text"] { texts.append(text) }
            }
            return texts.joined(separator: "\n")
        default:
            return nil
        }
    }
}

/// RouteLLM's model name convention, `router-<name>-<threshold>`, extended to `router-<name>-<λ>`
/// (or ε) for routers with a cost policy: the number is the router's own knob.
public struct RouterModelName: Sendable, Hashable {
    public var router: String
    public var value: Double

    public init?(_ model: String) {
        guard model.hasPrefix("router-") else { return nil }
        let rest = model.dropFirst("router-".count)
        guard let dash = rest.lastIndex(of: "-") else { return nil }
        let name = rest[..<dash]
        guard !name.isEmpty, let threshold = Double(rest[rest.index(after: dash)...]), threshold.isFinite else { return nil }
        router = String(name)
        value = threshold
    }
}

/// The request as a client writes it.
private struct WireRequestOut: Encodable {
    var id: RequestID?
    var request: Request

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: FieldKey.self)
        try container.encodeIfPresent(id, forKey: FieldKey("id"))
        try container.encode(request.op.rawValue, forKey: FieldKey("op"))
        switch request {
        case .route(let route):
            try container.encode(route.router, forKey: FieldKey("router"))
            try container.encode(route.prompt, forKey: FieldKey("prompt"))
            try container.encodeIfPresent(route.threshold, forKey: FieldKey("threshold"))
            try container.encodeIfPresent(route.lambda, forKey: FieldKey("lambda"))
            try container.encodeIfPresent(route.cheapestWithin, forKey: FieldKey("cheapest_within"))
            try container.encodeIfPresent(route.session, forKey: FieldKey("session"))
        case .score(let score):
            try container.encode(score.router, forKey: FieldKey("router"))
            try container.encode(score.prompts, forKey: FieldKey("prompts"))
        case .embed(let embed):
            try container.encodeIfPresent(embed.encoder, forKey: FieldKey("encoder"))
            try container.encode(embed.texts, forKey: FieldKey("texts"))
            if embed.tokens { try container.encode(true, forKey: FieldKey("tokens")) }
            try container.encodeIfPresent(embed.longText, forKey: FieldKey("long_text"))
        case .feedback(let feedback):
            switch feedback.subject {
            case .decision(let id): try container.encode(id, forKey: FieldKey("decision_id"))
            case .prompt(let router, let text):
                try container.encode(router, forKey: FieldKey("router"))
                try container.encode(text, forKey: FieldKey("prompt"))
            }
            try container.encode(feedback.model, forKey: FieldKey("model"))
            switch feedback.value {
            case .pairwise(let outcome, let against):
                try container.encode(outcome, forKey: FieldKey("outcome"))
                try container.encode(against, forKey: FieldKey("against"))
            case .pointwise(let quality): try container.encode(quality, forKey: FieldKey("quality"))
            case .failed: try container.encode("failed", forKey: FieldKey("outcome"))
            }
        case .learn(let learn):
            try container.encode(learn.action.rawValue, forKey: FieldKey("action"))
            try container.encodeIfPresent(learn.router, forKey: FieldKey("router"))
        case .reload(let reload):
            if reload.dryRun { try container.encode(true, forKey: FieldKey("dry_run")) }
        case .set(let set):
            try container.encode(set.router, forKey: FieldKey("router"))
            try container.encodeIfPresent(set.threshold, forKey: FieldKey("threshold"))
            try container.encodeIfPresent(set.strongFraction, forKey: FieldKey("strong_fraction"))
        case .routers, .health, .status, .stats:
            break
        }
    }
}
