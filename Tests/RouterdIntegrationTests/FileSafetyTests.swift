import Foundation
import RouterdTestSupport
import Testing

/// The daemon's own files cannot be redirected or tampered with by another local user (issue 23,
/// findings 6 and 9): no symbolic link is followed, and a file or folder that another user owns or
/// could write is refused with a message naming it, while what was serving goes on.
@Suite(.timeLimit(.minutes(10))) struct FileSafetyTests {
    static func start(_ directory: TemporaryDirectory, extra: String) throws -> (status: Int32, stderr: String) {
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/routerd.sock", extra: extra))
        let run = try runCommand(try Package.binary("routerd"), ["--config", config])
        return (run.status, run.stderr)
    }

    /// A symlinked `battles.jsonl`: the old start-up trim of a torn last line truncated the link's
    /// target, whatever file that was.
    @Test func aSymlinkedFeedbackFileIsRefusedAndItsTargetUntouched() throws {
        let directory = try TemporaryDirectory()
        let victim = try directory.write("victim.txt", "first line\nsecond line with no newline")
        try FileManager.default.createDirectory(atPath: directory.path + "/feedback", withIntermediateDirectories: true)
        chmod(directory.path + "/feedback", 0o750)
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/feedback/battles.jsonl", withDestinationPath: victim)
        let run = try Self.start(directory, extra: "feedback:\n  directory: \(directory.path)/feedback")
        #expect(run.status == 1)
        #expect(run.stderr.contains("battles.jsonl") && run.stderr.contains("symbolic link"), "\(run.stderr)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "first line\nsecond line with no newline", "the target is untouched")
    }

    @Test func aSymlinkedDecisionLogIsRefused() throws {
        let directory = try TemporaryDirectory()
        let victim = try directory.write("victim.txt", "keep me")
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/decisions.jsonl", withDestinationPath: victim)
        let run = try Self.start(directory, extra: "decision_log:\n  path: \(directory.path)/decisions.jsonl")
        #expect(run.status == 1)
        #expect(run.stderr.contains("decisions.jsonl") && run.stderr.contains("symbolic link"), "\(run.stderr)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "keep me")
    }

    /// A feedback folder others can write: anyone could swap its files for links.
    @Test func aGroupOrWorldWritableFeedbackFolderIsRefused() throws {
        let directory = try TemporaryDirectory()
        let folder = directory.path + "/feedback"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        chmod(folder, 0o777)
        let run = try Self.start(directory, extra: "feedback:\n  directory: \(folder)")
        #expect(run.status == 1)
        #expect(run.stderr.contains(folder) && run.stderr.contains("mode 777"), "\(run.stderr)")
        chmod(folder, 0o750)
        // A folder routerd creates is 0750.
        let fresh = directory.path + "/fresh"
        let daemon = try Daemon(config: { TestConfig.yaml(socket: $0, extra: "feedback:\n  directory: \(fresh)") })
        _ = daemon
        let mode = try #require(try FileManager.default.attributesOfItem(atPath: fresh)[.posixPermissions] as? Int)
        #expect(mode == 0o750, "mode \(String(mode, radix: 8))")
    }

    /// A reload onto a folder that is refused is rejected, and the old store keeps serving.
    @Test func aReloadOntoAnUnsafeFolderIsRejectedAndTheOldStoreServes() throws {
        let directory = try TemporaryDirectory()
        let daemon = try Daemon(
            directory: directory, config: { TestConfig.yaml(socket: $0, extra: "feedback:\n  directory: \(directory.path)/good") })
        let connection = try daemon.connect()
        let unsafe = directory.path + "/unsafe"
        try FileManager.default.createDirectory(atPath: unsafe, withIntermediateDirectories: true)
        chmod(unsafe, 0o770)
        try TestConfig.yaml(socket: daemon.socket, extra: "feedback:\n  directory: \(unsafe)").write(
            toFile: daemon.configFile, atomically: true, encoding: .utf8)
        let reload = try connection.request(#"{"op":"reload"}"#)
        #expect(reload.errorCode == "reload_failed" && reload.errorMessage.contains("writable by group or others"), "\(reload)")
        let feedback = try connection.request(#"{"op":"feedback","router":"random","prompt":"x","model":"\#(TestConfig.strong)","quality":1}"#)
        #expect(feedback.ok, "\(feedback)")
        #expect(FileManager.default.fileExists(atPath: directory.path + "/good/quality.jsonl"))
    }
}

/// Plugins are code loaded into routerd: a descriptor, library or folder another user could change
/// is refused, naming the file and its mode (issue 23, finding 7).
@Suite(.timeLimit(.minutes(10))) struct PluginTrustTests {
    /// A copy of the `random` plugin in a folder of its own: `plugins/random/plugin.yaml` and its library.
    static func copyOfRandom(in directory: TemporaryDirectory) throws -> (descriptor: String, library: String) {
        let folder = directory.path + "/plugins/random"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let descriptor = folder + "/plugin.yaml"
        let library = folder + "/libRandomRouter.so"
        try FileManager.default.copyItem(atPath: Package.root + "/plugins/random/plugin.yaml", toPath: descriptor)
        try FileManager.default.copyItem(atPath: Package.binDirectory + "/libRandomRouter.so", toPath: library)
        for path in [directory.path + "/plugins", folder] { chmod(path, 0o755) }
        chmod(descriptor, 0o644)
        chmod(library, 0o755)
        return (descriptor, library)
    }

    static func check(_ directory: TemporaryDirectory) throws -> (status: Int32, stderr: String) {
        let config = try directory.write(
            "routerd.yaml", TestConfig.yaml(socket: directory.path + "/routerd.sock", searchPaths: [directory.path + "/plugins"]))
        let run = try runCommand(try Package.binary("routerd"), ["--check-config", "--config", config])
        return (run.status, run.stderr)
    }

    @Test func aPluginOthersCouldChangeIsRefused() throws {
        let directory = try TemporaryDirectory()
        let (descriptor, library) = try Self.copyOfRandom(in: directory)
        #expect(try Self.check(directory).status == 0, "the copy itself loads")

        chmod(descriptor, 0o666)
        var run = try Self.check(directory)
        #expect(run.status != 0 && run.stderr.contains(descriptor) && run.stderr.contains("mode 666"), "\(run.stderr)")
        chmod(descriptor, 0o644)

        chmod(library, 0o775)
        run = try Self.check(directory)
        #expect(run.status != 0 && run.stderr.contains(library) && run.stderr.contains("mode 775"), "\(run.stderr)")
        chmod(library, 0o755)

        let folder = (descriptor as NSString).deletingLastPathComponent
        chmod(folder, 0o777)
        run = try Self.check(directory)
        #expect(run.status != 0 && run.stderr.contains(folder) && run.stderr.contains("mode 777"), "\(run.stderr)")
        chmod(folder, 0o755)
        #expect(try Self.check(directory).status == 0)
    }

    @Test(.requires(.actAsNobody)) func aPluginAnotherUserOwnsIsRefused() throws {
        let nobody = try OtherUser.nobody()
        let directory = try TemporaryDirectory()
        let (_, library) = try Self.copyOfRandom(in: directory)
        chown(library, nobody.uid, nobody.gid)
        let run = try Self.check(directory)
        #expect(run.status != 0 && run.stderr.contains(library) && run.stderr.contains("owned by uid \(nobody.uid)"), "\(run.stderr)")
    }
}
