import Glibc
import NIOCore
import RouterConfig
import RouterEngine

/// The process at the other end of a connection, from SO_PEERCRED.
struct Peer: Sendable {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32

    /// The principal its decisions, sessions and cached embeddings belong to.
    var requester: Requester { .uid(uid) }

    /// Root, and the uids and gids in the config's admin lists, may run admin ops.
    func isAdmin(_ admin: DaemonConfig.Admin) -> Bool {
        uid == 0 || admin.uids.contains(uid) || admin.gids.contains(gid)
    }
}

/// The layout of Linux's `struct ucred`, which Glibc's module does not export.
public struct PeerCredentials: Sendable {
    public var pid: Int32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0

    /// The credentials of the process at the other end of a Unix-socket `channel` (SO_PEERCRED),
    /// read on its event loop; a failed future where the channel has no socket to ask.
    public static func read(from channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        (channel as? any SocketOptionProvider)?.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
            ?? channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
    }
}
