import RouterJSON

/// An error as OpenAI's API reports it: an HTTP status and the body
/// `{"error": {"message", "type", "param", "code"}}`, from which the OpenAI SDKs raise their typed
/// exceptions (400 `BadRequestError`, 401 `AuthenticationError`, 404 `NotFoundError`, 429
/// `RateLimitError`, 5xx `InternalServerError`).
public struct OpenAIError: Error, Sendable, Hashable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    /// 400: the request is malformed or misses what it must say.
    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> OpenAIError {
        OpenAIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    /// 404: the `model` names neither a router nor a model of the catalogue.
    public static func unknownModel(_ model: String, known: [String]) -> OpenAIError {
        OpenAIError(
            status: 404,
            message:
                "The model '\(model)' does not exist: name a router as router-<name> or router-<name>-<number>, or a model of the catalogue (GET /v1/models lists them: \(known.joined(separator: ", ")))",
            type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    /// 413: the body is larger than the gateway accepts.
    public static func bodyTooLarge(limit: Int) -> OpenAIError {
        OpenAIError(
            status: 413, message: "The request body is larger than the gateway accepts (gateway.max_body_bytes = \(limit))",
            type: "invalid_request_error", code: "request_too_large")
    }

    public var description: String { "\(status) \(type): \(message)" }

    /// The JSON body, one line.
    public var body: [UInt8] {
        var error: [String: JSONValue] = ["message": .string(message), "type": .string(type)]
        error["param"] = param.map(JSONValue.string) ?? .null
        error["code"] = code.map(JSONValue.string) ?? .null
        var writer = JSONWriter()
        writer.value(.object(["error": .object(error)]))
        return writer.bytes
    }
}
