import Foundation
import SafeTensors

/// Where a plugin that learns online keeps its learned state (`learned.safetensors` in the
/// instance's state folder), with the file handling every such plugin needs: a state it cannot
/// use is set aside, never fatal; writes make the folder; removal lasts a crash.
public struct LearnedStateFile: Sendable {
    public let path: String

    /// The instance's state file; nil when the host offers no learning (no state folder).
    public init?(stateDirectory: String?) {
        guard let stateDirectory else { return nil }
        path = stateDirectory + "/learned.safetensors"
    }

    /// The state `read` makes of the file, or nil when there is none. A file `read` rejects
    /// (learned for other models, another encoder or other weights, or damaged) is moved aside to
    /// `.unusable` and logged: the router starts from its weights alone and keeps serving.
    public func load<State>(host: HostServices, _ read: (SafeTensorsFile) throws -> State) -> State? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try read(try SafeTensorsFile(path: path))
        } catch {
            let aside = path + ".unusable"
            rename(path, aside)
            host.log(.warning, "cannot use the learned state (\(error)); moved it to \(aside) and start learning anew from the weights")
            return nil
        }
    }

    /// Writes the state with `write` (given the path), making the state folder first if needed.
    public func save(_ write: (String) throws -> Void) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        try write(path)
    }

    /// Removes the state, durably: the forgotten state must not come back at the next start.
    public func remove() throws {
        if unlink(path) != 0, errno != ENOENT {
            throw PluginError("cannot remove \(path): \(String(cString: strerror(errno)))")
        }
        SafeTensorsWriter.syncFolder(of: path)
    }
}
