import CRouterPlugin
import Foundation

/// Fills the C vtable for a Swift plugin type. Call it from the plugin's one
/// exported entry point:
///
/// ```swift
/// @_cdecl("routerd_plugin_entry")
/// public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
///     exportRouterPlugin(MyRouter.self, hostABI: hostABI, into: out, size: size)
/// }
/// ```
///
/// The entry point must be `public`: internal `@_cdecl` functions are not
/// exported from release builds.
public func exportRouterPlugin<Plugin: RouterPlugin>(
    _ type: Plugin.Type, hostABI: UInt32, into out: UnsafeMutablePointer<rp_plugin>?, size: Int
) -> Int32 {
    guard hostABI == RP_ABI_VERSION, let out, size >= MemoryLayout<rp_plugin>.size else { return RP_ERROR }
    registry.withLock { factory in
        factory = { try Plugin(context: $0) }
    }
    out.pointee = rp_plugin(
        abi_version: RP_ABI_VERSION,
        struct_size: UInt32(MemoryLayout<rp_plugin>.size),
        name: staticCString(Plugin.name),
        version: staticCString(Plugin.version),
        create: createThunk,
        score: scoreThunk,
        describe: describeThunk,
        destroy: destroyThunk,
        free_string: { free($0) })
    return RP_OK
}

/// The factory of the one plugin type this image exports. Each plugin image
/// links its own copy of this module, so each has its own registry.
private let registry = FactoryRegistry()

private final class FactoryRegistry: @unchecked Sendable {
    // Guarded by `lock`.
    private var factory: (@Sendable (PluginContext) throws -> any RouterPlugin)?
    private let lock = NSLock()

    func withLock<T>(_ body: (inout (@Sendable (PluginContext) throws -> any RouterPlugin)?) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&factory)
    }
}

/// Keeps an instance alive behind the opaque pointer the host holds.
private final class InstanceBox {
    let plugin: any RouterPlugin
    init(_ plugin: any RouterPlugin) { self.plugin = plugin }
}

/// A C string that lives as long as the image (never freed: the image is never unloaded).
private func staticCString(_ string: String) -> UnsafePointer<CChar> {
    UnsafePointer(strdup(string)!)
}

private func errorString(_ error: any Error) -> UnsafeMutablePointer<CChar>? {
    strdup((error as? PluginError)?.message ?? "\(error)")
}

private let createThunk:
    @convention(c) (
        UnsafePointer<rp_host>?, UnsafePointer<rp_instance_info>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
        UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> Int32 = { host, info, instance, error in
        guard let host, let info, let instance else { return RP_ERROR }
        do {
            guard let factory = registry.withLock({ $0 }) else { throw PluginError("plugin entry point was not called") }
            let details = info.pointee
            let params = try PluginParams(
                json: UnsafeBufferPointer(
                    start: UnsafeRawPointer(details.params_json)?.assumingMemoryBound(to: UInt8.self), count: details.params_json_len))
            let context = PluginContext(
                name: String(cString: details.name), params: params, strongModel: String(cString: details.strong_model),
                weakModel: String(cString: details.weak_model), embeddingDimension: details.embedding_dim, host: HostServices(table: host))
            let plugin = try factory(context)
            instance.pointee = Unmanaged.passRetained(InstanceBox(plugin)).toOpaque()
            return RP_OK
        } catch let caught {
            error?.pointee = errorString(caught)
            return RP_ERROR
        }
    }

private let scoreThunk:
    @convention(c) (
        UnsafeMutableRawPointer?, UnsafePointer<rp_prompt>?, Int, UnsafeMutablePointer<Double>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> Int32 = { instance, prompts, count, scores, error in
        guard let instance, let scores, count == 0 || prompts != nil else { return RP_ERROR }
        let plugin = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue().plugin
        func prompt(_ index: Int) -> Prompt {
            let raw = prompts![index]
            let text = UnsafeBufferPointer(start: UnsafeRawPointer(raw.text)?.assumingMemoryBound(to: UInt8.self), count: raw.text_len)
            return Prompt(utf8: text, embedding: raw.embedding.map { UnsafeBufferPointer(start: $0, count: raw.embedding_dim) })
        }
        do {
            if count == 1 {
                // A decision: the single-prompt path, with no array to build.
                scores[0] = try plugin.score(prompt(0))
            } else {
                let results = try plugin.score(batch: (0..<count).map(prompt))
                guard results.count == count else { throw PluginError("the plugin returned \(results.count) scores for \(count) prompts") }
                for index in 0..<count { scores[index] = results[index] }
            }
            return RP_OK
        } catch let caught {
            error?.pointee = errorString(caught)
            return RP_ERROR
        }
    }

private let describeThunk: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutablePointer<CChar>? = { instance in
    guard let instance else { return nil }
    return strdup(Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue().plugin.describe().json)
}

private let destroyThunk: @convention(c) (UnsafeMutableRawPointer?) -> Void = { instance in
    guard let instance else { return }
    Unmanaged<InstanceBox>.fromOpaque(instance).release()
}
