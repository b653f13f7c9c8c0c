/// How one call to an upstream model failed, as far as falling back is concerned.
public enum AttemptFailure: Sendable, Hashable, CustomStringConvertible {
    /// No connection, or it broke before a status arrived.
    case connection
    /// No status within the attempt's timeout.
    case timeout
    /// An HTTP status other than 2xx, before any byte reached the client; `retryAfter` is the
    /// upstream's `retry-after` in seconds, when it sent one.
    case status(Int, retryAfter: Double?)
    /// A 2xx whose body is not a chat completion.
    case malformed
    /// The call failed after bytes had been sent to the client: nothing can be taken back.
    case midStream

    /// Whether another attempt may succeed where this one failed: trouble of the upstream or the
    /// way to it (connection, timeout, 429, 5xx, a malformed answer), never the request's own
    /// fault (any other 4xx, which the client gets as the upstream said it), and never once the
    /// client has had bytes.
    public var isRetryable: Bool {
        switch self {
        case .connection, .timeout, .malformed: true
        case .status(let code, _): code == 429 || (500...599).contains(code)
        case .midStream: false
        }
    }

    /// The class `stats` counts upstream errors by.
    public var errorClass: String {
        switch self {
        case .connection: "connection"
        case .timeout: "timeout"
        case .status(429, _): "rate_limited"
        case .status(let code, _) where code >= 500: "server_error"
        case .status: "client_error"
        case .malformed: "malformed"
        case .midStream: "mid_stream"
        }
    }

    public var description: String {
        switch self {
        case .status(let code, let retryAfter): "HTTP \(code)" + (retryAfter.map { " (retry-after \($0) s)" } ?? "")
        default: String(errorClass.map { $0 == "_" ? " " : $0 })
        }
    }
}
