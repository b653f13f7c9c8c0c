import Foundation
import Testing

/// What a test needs from the machine beyond the package: root and `setpriv` to act as another
/// user, systemd's tools, the encoder model, the shared data. A test that lacks one shows as
/// skipped with the reason (`.requires(...)`), never as a pass.
///
/// CI sets `ROUTERD_TEST_STRICT=1`: there every requirement must hold, so a test that would skip
/// runs instead and fails on what is missing (`.ci/run` says so). A developer's machine without
/// root or `../shared` still runs the rest.
public struct Requirement: Sendable {
    /// Whether the machine has it.
    public let isMet: Bool
    /// Why a test skips without it, and how to get it.
    public let reason: String

    public init(isMet: Bool, reason: String) {
        self.isMet = isMet
        self.reason = reason
    }

    /// `ROUTERD_TEST_STRICT=1`: no requirement may skip a test.
    public static let strict = ProcessInfo.processInfo.environment["ROUTERD_TEST_STRICT"] == "1"

    public static let setprivPath = "/usr/bin/setpriv"

    /// Root, `setpriv` and user `nobody`: a test client that is another, unprivileged user.
    public static let actAsNobody = Requirement(
        isMet: getuid() == 0 && FileManager.default.isExecutableFile(atPath: setprivPath) && getpwnam("nobody") != nil,
        reason: "needs root, \(setprivPath) (util-linux) and user nobody to act as another user")

    /// Root: mounts, namespaces, handing a socket to another owner.
    public static let root = Requirement(isMet: getuid() == 0, reason: "needs root")

    /// A systemd tool at `path` (Debian's `systemd` package).
    public static func systemdTool(_ path: String) -> Requirement {
        Requirement(isMet: FileManager.default.isExecutableFile(atPath: path), reason: "\(path) is not installed (apt-get install systemd)")
    }

    /// The encoder model that `make setup` fetches.
    public static let encoderModel = Requirement(isMet: EncoderFixture.modelIsPresent, reason: EncoderFixture.missingModel)

    /// The encoder's golden vectors, in the shared data.
    public static let encoderGolden = Requirement(isMet: EncoderFixture.goldenIsPresent, reason: EncoderFixture.missingGolden)

    /// A file of the shared data, by its path under `../shared/data/`.
    public static func sharedData(_ relativePath: String) -> Requirement {
        let path = SharedData.path(relativePath)
        return Requirement(
            isMet: FileManager.default.fileExists(atPath: path),
            reason: "../shared/data/\(relativePath) is absent; it comes with the project's shared data beside the clone")
    }
}

/// The project's shared data (`../shared/data` beside the repository).
public enum SharedData {
    public static let root = Package.root + "/../shared/data"
    public static func path(_ relativePath: String) -> String { root + "/" + relativePath }
}

/// The user a test acts as through `setpriv`.
public struct OtherUser: Sendable {
    public let uid: uid_t
    public let gid: gid_t
    public let groupName: String

    /// User `nobody`; throws (failing the test) where it is missing, as under `ROUTERD_TEST_STRICT`.
    public static func nobody() throws -> OtherUser {
        guard getuid() == 0 else { throw HarnessError("this test needs root (it acts as user nobody)") }
        guard FileManager.default.isExecutableFile(atPath: Requirement.setprivPath) else {
            throw HarnessError("\(Requirement.setprivPath) is missing (apt-get install util-linux)")
        }
        guard let entry = getpwnam("nobody") else { throw HarnessError("there is no user nobody") }
        let gid = entry.pointee.pw_gid
        let group = getgrgid(gid).map { String(cString: $0.pointee.gr_name) } ?? String(gid)
        return OtherUser(uid: entry.pointee.pw_uid, gid: gid, groupName: group)
    }

    /// `setpriv` arguments that run `command` as this user, with no supplementary groups.
    public func run(_ command: String) -> [String] {
        ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", command]
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs the test only where `requirement` holds (always under `ROUTERD_TEST_STRICT=1`), and
    /// shows it as skipped with the reason elsewhere.
    public static func requires(_ requirement: Requirement) -> Self {
        .enabled(if: Requirement.strict || requirement.isMet, Comment(rawValue: requirement.reason))
    }
}
