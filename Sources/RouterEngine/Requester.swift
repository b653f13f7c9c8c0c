/// Who asks for a decision: the principal that owns it (only it, or a trusted reporter, may give
/// feedback on it), its sessions and its embedding-cache namespace.
public enum Requester: Sendable, Hashable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    /// A local peer, by the uid SO_PEERCRED gives (the socket, and the gateway's Unix socket).
    case uid(UInt32)
    /// A named gateway key (`gateway.keys[].name`): over TCP there are no credentials, so each
    /// named key is a principal of its own.
    case key(String)

    public init(integerLiteral uid: UInt32) { self = .uid(uid) }

    /// A uid as its number; a key as `key:NAME`, which no uid reads as.
    public var description: String {
        switch self {
        case .uid(let uid): "\(uid)"
        case .key(let name): "key:\(name)"
        }
    }
}
