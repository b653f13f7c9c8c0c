import CRouterPlugin
import Foundation
import NIOConcurrencyHelpers

/// Why a plugin library could not be used.
public struct PluginLoadError: Error, Sendable, CustomStringConvertible {
    public var library: String
    public var message: String

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
    /// Copied out of the plugin; its function pointers stay valid forever.
    let vtable: rp_plugin

    /// The host's ABI version, which plugins must match.
    public static let hostABIVersion = RP_ABI_VERSION

    /// The folder of the running binary: plugin libraries built next to it are found there.
    public static var executableDirectory: String? {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { ($0 as NSString).deletingLastPathComponent }
    }

    private static let cache = NIOLockedValueBox<[String: PluginLibrary]>([:])

    /// Loads the library at `path`, or returns the copy already loaded.
    public static func load(path: String) throws(PluginLoadError) -> PluginLibrary {
        let result: Result<PluginLibrary, PluginLoadError> = cache.withLockedValue { cache in
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
        guard table.struct_size >= UInt32(MemoryLayout<rp_plugin>.size) else {
            throw fail(
                "plugin vtable is \(table.struct_size) bytes, routerd needs \(MemoryLayout<rp_plugin>.size); rebuild the plugin against this routerd's router_plugin.h"
            )
        }
        var missing: [String] = []
        if table.create == nil { missing.append("create") }
        if table.score == nil { missing.append("score") }
        if table.destroy == nil { missing.append("destroy") }
        if table.free_string == nil { missing.append("free_string") }
        if table.name == nil { missing.append("name") }
        guard missing.isEmpty else { throw fail("plugin vtable lacks \(missing.joined(separator: ", "))") }
        self.path = path
        self.name = String(cString: table.name)
        self.version = table.version.map { String(cString: $0) } ?? "0"
        self.abiVersion = table.abi_version
        self.vtable = table
    }

    /// Takes ownership of a string the plugin returned.
    func takeString(_ string: UnsafeMutablePointer<CChar>?) -> String? {
        guard let string else { return nil }
        defer { vtable.free_string?(string) }
        return String(cString: string)
    }
}

// rp_plugin holds only immutable C pointers to static code and strings.
extension rp_plugin: @retroactive @unchecked Sendable {}
