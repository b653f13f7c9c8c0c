import Glibc
import RouterConfig

/// The process at the other end of a connection, from SO_PEERCRED.
struct Peer: Sendable {
    var pid: Int32
    var uid: UInt32
    var gid: UInt32

    /// Root, and the uids and gids in the config's admin lists, may run admin ops.
    func isAdmin(_ admin: DaemonConfig.Admin) -> Bool {
        uid == 0 || admin.uids.contains(uid) || admin.gids.contains(gid)
    }
}

/// The layout of Linux's `struct ucred`, which Glibc's module does not export.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
