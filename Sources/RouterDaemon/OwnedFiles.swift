import Foundation

/// The daemon's own files and folders (the decision log, the feedback store), opened so that
/// another local user cannot redirect or tamper with them: no symlink is followed
/// (`O_NOFOLLOW`), what is opened is checked with `fstat` (a regular file or a folder, owned by
/// the daemon's user, not writable by group or others), and folders are created 0750.
enum OwnedFiles {
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    /// Opens `path` for appending, creating it with `mode` if missing.
    static func openForAppending(_ path: String, mode: mode_t) throws(Refusal) -> Int32 {
        let fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else {
            let reason = errno == ELOOP ? "it is a symbolic link, which routerd does not follow" : String(cString: strerror(errno))
            throw Refusal(description: "cannot open \(path): \(reason)")
        }
        return try checked(fd, path: path, kind: S_IFREG, what: "a regular file")
    }

    /// Opens the folder `path`, creating it 0750 if missing, for `fsync` after a rename or unlink in it.
    static func openFolder(_ path: String, create: Bool) throws(Refusal) -> Int32 {
        if create, mkdir(path, 0o750) != 0, errno != EEXIST {
            throw Refusal(description: "cannot create the folder \(path): \(String(cString: strerror(errno)))")
        }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            let reason =
                errno == ELOOP || errno == ENOTDIR
                ? "it is not a folder (or is a symbolic link, which routerd does not follow)" : String(cString: strerror(errno))
            throw Refusal(description: "cannot open the folder \(path): \(reason)")
        }
        return try checked(fd, path: path, kind: S_IFDIR, what: "a folder")
    }

    /// Syncs the folder holding `path`, so a rename, creation or unlink in it lasts a crash.
    static func syncFolder(of path: String) {
        let folder = (path as NSString).deletingLastPathComponent
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// `fd`, or, closing it, a refusal of what is not of `kind`, not owned by the daemon's user,
    /// or writable by group or others.
    private static func checked(_ fd: Int32, path: String, kind: mode_t, what: String) throws(Refusal) -> Int32 {
        do throws(Refusal) {
            try check(fd, path: path, kind: kind, what: what)
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// Refuses what is not of `kind`, not owned by the daemon's user, or writable by group or others.
    /// A character device of root's (`/dev/null`, `/dev/full`) may stand in for a file: no other
    /// user can make one.
    private static func check(_ fd: Int32, path: String, kind: mode_t, what: String) throws(Refusal) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Refusal(description: "cannot stat \(path): \(String(cString: strerror(errno)))") }
        if kind == S_IFREG, info.st_mode & S_IFMT == S_IFCHR, info.st_uid == 0 { return }
        guard info.st_mode & S_IFMT == kind else { throw Refusal(description: "\(path) is not \(what)") }
        guard info.st_uid == geteuid() else {
            throw Refusal(
                description: "\(path) is owned by uid \(info.st_uid), not by routerd's user (uid \(geteuid())); another user could change it")
        }
        guard info.st_mode & mode_t(S_IWGRP | S_IWOTH) == 0 else {
            throw Refusal(
                description:
                    "\(path) has mode \(String(info.st_mode & 0o7777, radix: 8)): writable by group or others, who could change it; chmod g-w,o-w it")
        }
    }
}
