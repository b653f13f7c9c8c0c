import CRouterPlugin
import Foundation
import Synchronization

/// Why a plugin library could not be used.
public struct PluginLoadError: Error, Sendable, CustomStringConvertible {
    public var library: String
    public var message: String

    public init(library: String, message: String) {
        self.library = library
        self.message = message
    }

    public var description: String { "plugin library \(library): \(message)" }
}

/// A loaded plugin image and its validated vtable.
///
/// Images are never unloaded: the Swift runtime keeps records that point into
/// a Swift image, and a later lookup crashes once it is unmapped. Libraries are
/// opened with RTLD_NODELETE and cached by path for the life of the process.
public final class PluginLibrary: Sendable {
    public let path: String
    public let name: String
    public let version: String
    public let abiVersion: UInt32
    /// The plugin's functions, checked present at load.
    let vtable: PluginVTable

    /// The host's ABI version, which plugins must match.
    public static let hostABIVersion = RP_ABI_VERSION

    /// The folder of the running binary: plugin libraries built next to it are found there.
    public static var executableDirectory: String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { ($0 as NSString).deletingLastPathComponent }
    }

    private static let cache = Mutex<[String: PluginLibrary]>([:])

    /// Loads the library at `path`, or returns the copy already loaded.
    public static func load(path: String) throws(PluginLoadError) -> PluginLibrary {
        let result: Result<PluginLibrary, PluginLoadError> = cache.withLock { cache in
            if let loaded = cache[path] { return .success(loaded) }
            do {
                let library = try PluginLibrary(opening: path)
                cache[path] = library
                return .success(library)
            } catch let error as PluginLoadError {
                return .failure(error)
            } catch {
                return .failure(PluginLoadError(library: path, message: "\(error)"))
            }
        }
        return try result.get()
    }

    private init(opening path: String) throws(PluginLoadError) {
        func fail(_ message: String) -> PluginLoadError { PluginLoadError(library: path, message: message) }
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw fail("dlopen failed: \(reason)")
        }
        // Deliberately never dlclose(handle); see the type's comment.
        guard let symbol = dlsym(handle, RP_ENTRY_SYMBOL) else {
            throw fail(
                "does not export the entry point '\(RP_ENTRY_SYMBOL)'; a Swift plugin needs a `public @_cdecl(\"\(RP_ENTRY_SYMBOL)\")` function")
        }
        let entry = unsafeBitCast(symbol, to: rp_entry_fn.self)
        var table = rp_plugin()
        let status = entry(RP_ABI_VERSION, &table, MemoryLayout<rp_plugin>.size)
        if table.abi_version != 0, table.abi_version != RP_ABI_VERSION {
            throw fail(
                "plugin ABI version \(table.abi_version) does not match routerd's \(RP_ABI_VERSION); rebuild the plugin against this routerd's router_plugin.h"
            )
        }
        guard status == RP_OK else {
            throw fail(
                "the entry point refused this host (routerd plugin ABI version \(RP_ABI_VERSION)); rebuild the plugin against this routerd's router_plugin.h"
            )
        }
        guard table.abi_version == RP_ABI_VERSION else {
            throw fail(
                "plugin ABI version \(table.abi_version) does not match routerd's \(RP_ABI_VERSION); rebuild the plugin against this routerd's router_plugin.h"
            )
        }
        guard table.struct_size >= UInt32(PluginVTable.revision1Size) else {
            throw fail(
                "plugin vtable is \(table.struct_size) bytes, routerd needs at least \(PluginVTable.revision1Size); rebuild the plugin against this routerd's router_plugin.h"
            )
        }
        // Fields past the plugin's struct_size were never written by it: an older revision lacks them.
        if Int(table.struct_size) < PluginVTable.revision2Size { table.score_models = nil }
        if Int(table.struct_size) < PluginVTable.revision3Size {
            table.learn = nil
            table.forget = nil
        }
        if Int(table.struct_size) < PluginVTable.revision4Size { table.familiarity = nil }
        if Int(table.struct_size) < PluginVTable.revision5Size { table.sample = nil }
        guard let vtable = PluginVTable(table) else {
            throw fail("plugin vtable lacks \(PluginVTable.missing(in: table).joined(separator: ", "))")
        }
        self.path = path
        self.name = String(cString: table.name)
        self.version = table.version.map { String(cString: $0) } ?? "0"
        self.abiVersion = table.abi_version
        self.vtable = vtable
    }

    /// Whether the plugin predicts each candidate's quality (ABI revision 2's `score_models`);
    /// without it a router of this plugin has exactly two candidates.
    public var predictsQualities: Bool { vtable.scoreModels != nil }

    /// Whether the plugin can learn online (ABI revision 3's `learn` and `forget`).
    public var learnsOnline: Bool { vtable.learn != nil && vtable.forget != nil }

    /// Whether the plugin says how familiar a prompt is to a router (ABI revision 4's `familiarity`).
    public var judgesFamiliarity: Bool { vtable.familiarity != nil }

    /// Whether the plugin draws predictions from its router's posterior (ABI revision 5's `sample`).
    public var samplesPosterior: Bool { vtable.sample != nil }

    /// Takes ownership of a string the plugin returned.
    func takeString(_ string: UnsafeMutablePointer<CChar>?) -> String? {
        guard let string else { return nil }
        defer { vtable.freeString(string) }
        return String(cString: string)
    }
}

/// A plugin's vtable with the functions the host needs made non-optional,
/// so no call site unwraps a function pointer.
struct PluginVTable: Sendable {
    typealias Create =
        @convention(c) (
            UnsafePointer<rp_host>?, UnsafePointer<rp_instance_info>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
            UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        ) -> Int32
    typealias Score =
        @convention(c) (
            UnsafeMutableRawPointer?, UnsafePointer<rp_prompt>?, Int, UnsafeMutablePointer<Double>?,
            UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        ) -> Int32
    typealias ScoreModels = Score
    typealias Learn =
        @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<rp_outcome>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
    typealias Forget = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
    typealias Describe = @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutablePointer<CChar>?
    typealias Destroy = @convention(c) (UnsafeMutableRawPointer?) -> Void
    typealias FreeString = @convention(c) (UnsafeMutablePointer<CChar>?) -> Void
    typealias Sample =
        @convention(c) (
            UnsafeMutableRawPointer?, UnsafePointer<rp_prompt>?, Int, UInt64, UnsafeMutablePointer<Double>?,
            UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        ) -> Int32

    let create: Create
    let score: Score
    /// Optional in the ABI: a plugin may have nothing to say.
    let describe: Describe?
    let destroy: Destroy
    let freeString: FreeString
    /// Revision 2, optional: per-candidate quality predictions.
    let scoreModels: ScoreModels?
    /// Revision 3, optional: online learning.
    let learn: Learn?
    let forget: Forget?
    /// Revision 4, optional: how familiar each prompt is to the router.
    let familiarity: Score?
    /// Revision 5, optional: draws from the router's posterior.
    let sample: Sample?

    /// The vtable's size in ABI revision 1, the smallest the host accepts.
    static let revision1Size = MemoryLayout<rp_plugin>.offset(of: \rp_plugin.score_models)!
    /// The vtable's size with revision 2's `score_models`.
    static let revision2Size = revision1Size + MemoryLayout<ScoreModels?>.size
    /// The vtable's size with revision 3's `learn` and `forget`.
    static let revision3Size = MemoryLayout<rp_plugin>.offset(of: \rp_plugin.familiarity)!
    /// The vtable's size with revision 4's `familiarity`.
    static let revision4Size = MemoryLayout<rp_plugin>.offset(of: \rp_plugin.sample)!
    /// The vtable's size with revision 5's `sample`.
    static let revision5Size = MemoryLayout<rp_plugin>.size

    init?(_ table: rp_plugin) {
        guard let create = table.create, let score = table.score, let destroy = table.destroy, let freeString = table.free_string,
            table.name != nil
        else { return nil }
        self.create = create
        self.score = score
        self.describe = table.describe
        self.destroy = destroy
        self.freeString = freeString
        self.scoreModels = table.score_models
        self.learn = table.learn
        self.forget = table.forget
        self.familiarity = table.familiarity
        self.sample = table.sample
    }

    /// The required entries `table` lacks.
    static func missing(in table: rp_plugin) -> [String] {
        var missing: [String] = []
        if table.create == nil { missing.append("create") }
        if table.score == nil { missing.append("score") }
        if table.destroy == nil { missing.append("destroy") }
        if table.free_string == nil { missing.append("free_string") }
        if table.name == nil { missing.append("name") }
        return missing
    }
}
