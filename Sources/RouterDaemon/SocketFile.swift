import Foundation
import Glibc

/// Why the daemon cannot listen on its socket path.
public struct SocketPathError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// Preparing and cleaning up the Unix socket's file.
public enum SocketFile {
    /// The longest path a Unix socket's address holds (its `sun_path` less the terminating NUL).
    static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// Makes `path` free to bind: creates its folder, removes a stale socket
    /// left by a crashed daemon, and refuses a path a live daemon serves.
    public static func prepare(_ path: String) throws(SocketPathError) {
        guard path.utf8.count <= maxPathBytes else {
            throw SocketPathError(
                description:
                    "socket path \(path) is longer than the \(maxPathBytes) bytes a Unix socket allows")
        }
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty, !FileManager.default.fileExists(atPath: folder) {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            } catch {
                throw SocketPathError(
                    description:
                        "cannot create the socket's folder \(folder): \(error.localizedDescription); create it, or choose another path with --socket")
            }
        }
        var info = stat()
        guard lstat(path, &info) == 0 else { return }  // nothing there: free
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw SocketPathError(description: "\(path) exists and is not a socket; remove it or choose another socket.path")
        }
        if isServed(path) {
            throw SocketPathError(
                description:
                    "another routerd is already serving \(path); stop it first (`routerctl status --socket \(path)` shows its pid), or choose another socket.path"
            )
        }
        // Nobody answers: a socket left behind by a daemon that crashed.
        guard unlink(path) == 0 || errno == ENOENT else {
            throw SocketPathError(description: "cannot remove the stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Where the daemon binds before renaming the socket to `path`: the same folder (a rename does
    /// not cross filesystems), a dot name with the pid, and no longer than `path` allows.
    static func stagingPath(for path: String) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        return (folder.isEmpty ? "" : folder + "/") + ".routerd-\(getpid()).sock"
    }

    /// A private folder (mode 0700, made by `mkdtemp`) beside `path`, for a listener that binds
    /// at a path it is given and cannot be asked to bind under a restrictive umask (the gateway's
    /// Hummingbird): nobody else can reach a socket inside it, so it can be given its mode and then
    /// renamed to `path` finished. Returns the socket path inside it.
    public static func privateStaging(for path: String) throws(SocketPathError) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        var template = Array(((folder.isEmpty ? "" : folder + "/") + ".routerd-staging-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SocketPathError(description: "cannot make a private folder beside \(path) to bind in: \(String(cString: strerror(errno)))")
        }
        let staging = String(cString: made) + "/s"
        guard staging.utf8.count <= maxPathBytes else {
            rmdir(made)
            throw SocketPathError(
                description:
                    "socket path \(path) leaves no room for the private folder routerd binds in first (\(staging) is longer than \(maxPathBytes) bytes); choose a shorter path"
            )
        }
        return staging
    }

    /// Gives the socket bound at `staging` (from ``privateStaging(for:)``) its mode, moves it to
    /// `path` and removes the private folder.
    public static func moveIntoPlace(_ staging: String, at path: String, mode: UInt32) throws(SocketPathError) {
        let folder = (staging as NSString).deletingLastPathComponent
        defer {
            unlink(staging)
            rmdir(folder)
        }
        try applyPermissions(staging, mode: mode, owner: nil, group: nil)
        guard rename(staging, path) == 0 else {
            throw SocketPathError(description: "cannot move the socket into place at \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// True when something accepts connections on the socket at `path`.
    static func isServed(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0
    }

    /// Applies the configured mode, owner and group to a socket the daemon created.
    /// Nothing here follows a symbolic link: the path is checked to be a socket the daemon owns
    /// (`lstat`), and its mode and owner are set on the path itself (`fchmodat` with
    /// `AT_SYMLINK_NOFOLLOW`, `lchown`), so a link swapped in at the name cannot turn either onto
    /// another file.
    public static func applyPermissions(_ path: String, mode: UInt32, owner: String?, group: String?) throws(SocketPathError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { throw SocketPathError(description: "cannot stat \(path): \(String(cString: strerror(errno)))") }
        guard info.st_mode & S_IFMT == S_IFSOCK, info.st_uid == geteuid() else {
            throw SocketPathError(description: "\(path) is no longer the socket routerd made (another file was put in its place); not changing it")
        }
        guard fchmodat(AT_FDCWD, path, mode_t(mode), AT_SYMLINK_NOFOLLOW) == 0 else {
            throw SocketPathError(description: "cannot set mode \(String(mode, radix: 8)) on \(path): \(String(cString: strerror(errno)))")
        }
        var uid = uid_t.max  // unchanged
        var gid = gid_t.max
        if let owner {
            if let entry = getpwnam(owner) {
                uid = entry.pointee.pw_uid
            } else if let number = uid_t(owner) {
                uid = number
            } else {
                throw SocketPathError(description: "socket.owner '\(owner)' is not a known user; create it or correct socket.owner")
            }
        }
        if let group {
            if let entry = getgrnam(group) {
                gid = entry.pointee.gr_gid
            } else if let number = gid_t(group) {
                gid = number
            } else {
                throw SocketPathError(description: "socket.group '\(group)' is not a known group; create it or correct socket.group")
            }
        }
        guard owner != nil || group != nil else { return }
        guard lchown(path, uid, gid) == 0 else {
            throw SocketPathError(
                description:
                    "cannot give \(path) to owner '\(owner ?? "(unchanged)")' and group '\(group ?? "(unchanged)")': \(String(cString: strerror(errno)))"
            )
        }
    }
}
