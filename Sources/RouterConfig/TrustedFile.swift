import Foundation

/// Code and its description that routerd loads into its own address space (plugin descriptors
/// and libraries) must be changeable only by root or routerd's own user: a file or its folder
/// that another user owns, or that group or others may write, is refused with the file and its
/// mode named. Symbolic links are resolved first, so the checks are on what would be loaded.
public enum TrustedFile {
    /// Why `path` (and the folder holding it) may not be loaded, or nil if it may.
    public static func problem(_ path: String) -> String? {
        let resolved = (path as NSString).resolvingSymlinksInPath
        let folder = (resolved as NSString).deletingLastPathComponent
        return problem(at: resolved, named: path, what: "file") ?? problem(at: folder.isEmpty ? "." : folder, named: folder, what: "folder")
    }

    private static func problem(at path: String, named name: String, what: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return "cannot stat \(name): \(String(cString: strerror(errno)))" }
        let mode = String(info.st_mode & 0o7777, radix: 8)
        guard info.st_uid == 0 || info.st_uid == geteuid() else {
            return
                "\(what) \(name) is owned by uid \(info.st_uid), neither root nor routerd's user (uid \(geteuid())), who could change what routerd loads"
        }
        guard info.st_mode & mode_t(S_IWGRP | S_IWOTH) == 0 else {
            return "\(what) \(name) has mode \(mode): writable by group or others, who could change what routerd loads; chmod g-w,o-w it"
        }
        return nil
    }
}
