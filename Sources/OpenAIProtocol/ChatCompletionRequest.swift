import Foundation
import RouterJSON
import RouterProtocol

/// A `POST /v1/chat/completions` body, read for what the gateway needs (the model it names, the
/// turn to route on, whether to stream, the caller's `user`) and kept whole, so that every other
/// field passes to the upstream untouched: SDKs add fields all the time.
public struct ChatCompletionRequest: Sendable, Hashable {
    /// The `model` the client asked for: a router (`router-<name>[-<number>]`) or a catalogue model.
    public var model: String
    /// What routing reads, as RouteLLM routes: the text of the last message whose role is `user`
    /// (a list of content parts gives its text parts, joined by newlines).
    public var prompt: String
    public var stream: Bool
    /// `stream_options.include_usage`: whether the client asked for the last chunk to carry usage.
    public var includeUsage: Bool
    /// OpenAI's end-user identifier, which the gateway may take as the session.
    public var user: String?
    /// Every member of the body, as sent.
    public var body: [String: JSONValue]

    /// Reads a body; anything that is not a chat completion request is a 400 naming the field.
    public init(json bytes: some Collection<UInt8>) throws(OpenAIError) {
        guard let parsed = try? JSONValue.parse(bytes) else {
            throw .invalidRequest("The request body is not valid JSON")
        }
        guard case .object(let body) = parsed else { throw .invalidRequest("The request body must be a JSON object") }
        guard let modelValue = body["model"] else { throw .invalidRequest("Missing required parameter: 'model'", param: "model") }
        guard case .string(let model) = modelValue, !model.isEmpty else {
            throw .invalidRequest("'model' must be a non-empty string", param: "model")
        }
        guard let messagesValue = body["messages"] else {
            throw .invalidRequest("Missing required parameter: 'messages'", param: "messages")
        }
        guard case .array(let messages) = messagesValue, !messages.isEmpty else {
            throw .invalidRequest("'messages' must be a non-empty array of {role, content} objects", param: "messages")
        }
        var lastUser: String?
        for (index, message) in messages.enumerated() {
            guard case .object(let members) = message, case .string(let role)? = members["role"] else {
                throw .invalidRequest("'messages[\(index)]' must be an object with a string 'role'", param: "messages[\(index)]")
            }
            guard role == "user" else { continue }
            lastUser = try Self.text(of: members["content"], at: index)
        }
        guard let lastUser else {
            throw .invalidRequest("'messages' has no message with role 'user' to route on", param: "messages")
        }
        var stream = false
        if let value = body["stream"], value != .null {
            guard case .bool(let flag) = value else { throw .invalidRequest("'stream' must be a boolean", param: "stream") }
            stream = flag
        }
        var includeUsage = false
        if case .object(let options)? = body["stream_options"], case .bool(let flag)? = options["include_usage"] { includeUsage = flag }
        var user: String?
        if let value = body["user"], value != .null {
            guard case .string(let text) = value else { throw .invalidRequest("'user' must be a string", param: "user") }
            user = text
        }
        self.model = model
        self.prompt = lastUser
        self.stream = stream
        self.includeUsage = includeUsage
        self.user = user
        self.body = body
    }

    /// A message's text, read as the socket's `route` reads it (``ChatMessageText``).
    private static func text(of content: JSONValue?, at index: Int) throws(OpenAIError) -> String {
        guard let content, let text = ChatMessageText.text(of: content) else {
            throw .invalidRequest(
                "'messages[\(index)].content' must be a string or a list of content part objects", param: "messages[\(index)].content")
        }
        return text
    }

    /// The body to send upstream: the same members with `model` the upstream's own name for the
    /// chosen model. A streamed request also asks for usage in its last chunk, so the gateway can
    /// price what the call really cost; that chunk reaches the client only if it asked for it.
    public func forwarded(as upstreamModel: String) -> [UInt8] {
        var members = body
        members["model"] = .string(upstreamModel)
        if stream {
            var options = members["stream_options"]?.objectValue ?? [:]
            options["include_usage"] = .bool(true)
            members["stream_options"] = .object(options)
        }
        var writer = JSONWriter()
        writer.value(.object(members))
        return writer.bytes
    }
}
