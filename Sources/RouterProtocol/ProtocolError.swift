/// The stable error codes of the wire protocol. Clients match on these;
/// messages are for people and may change.
public enum ErrorCode: String, Codable, Sendable, CaseIterable {
    /// The line is not valid UTF-8 JSON, is nested too deeply, or is not an object.
    case badJSON = "bad_json"
    /// The line exceeds `limits.max_line_bytes`; the rest of it was discarded.
    case lineTooLong = "line_too_long"
    /// A request over one of the limits that bound its cost (`limits.max_texts`, `limits.max_windows`).
    case tooLarge = "too_large"
    /// `op` names no known operation.
    case unknownOp = "unknown_op"
    /// A field the op needs is absent.
    case missingField = "missing_field"
    /// A field has the wrong type or an invalid value.
    case badField = "bad_field"
    /// `router` names no router instance of the current generation.
    case unknownRouter = "unknown_router"
    /// The plugin failed to score the prompt.
    case pluginError = "plugin_error"
    /// The router did not decide within its `timeout`; other routers are unaffected.
    case routerTimeout = "router_timeout"
    /// The daemon is at a limit (connections); try again later.
    case overloaded = "overloaded"
    /// The peer may not run this op (admin ops need an admin uid/gid).
    case forbidden = "forbidden"
    /// A reload was rejected; the previous configuration keeps serving.
    case reloadFailed = "reload_failed"
    /// `feedback` named a `decision_id` that is unknown or expired; send `router` and `prompt` instead.
    case unknownDecision = "unknown_decision"
    /// `feedback` named a model that is not a candidate of the router.
    case unknownModel = "unknown_model"
    /// Feedback cannot be recorded: the config has no `feedback:`, or the write failed; nothing was recorded.
    case feedbackUnavailable = "feedback_unavailable"
    /// The daemon is shutting down and takes no new requests.
    case shuttingDown = "shutting_down"
    /// A bug in routerd; please report it.
    case internalError = "internal"
}

/// An error as it travels on the wire: `{"code": …, "message": …}`.
public struct ProtocolError: Error, Codable, Sendable, Hashable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
