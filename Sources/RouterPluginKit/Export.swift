import CRouterPlugin
import Foundation
import Synchronization

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
    // A host of an older revision passes a smaller table: fill what it knows, and say so in struct_size.
    let revision1Size = MemoryLayout<rp_plugin>.offset(of: \rp_plugin.score_models)!
    guard hostABI == RP_ABI_VERSION, let out, size >= revision1Size else { return RP_ERROR }
    registry.withLock { factory in
        factory = { try Plugin(context: $0) }
    }
    let written = min(size, MemoryLayout<rp_plugin>.size)
    var table = rp_plugin(
        abi_version: RP_ABI_VERSION,
        struct_size: UInt32(written),
        name: staticCString(Plugin.name),
        version: staticCString(Plugin.version),
        create: createThunk,
        score: scoreThunk,
        describe: describeThunk,
        destroy: destroyThunk,
        free_string: { free($0) },
        score_models: Plugin.self is any QualityPredictingRouter.Type ? scoreModelsThunk : nil,
        learn: Plugin.self is any OnlineLearningRouter.Type ? learnThunk : nil,
        forget: Plugin.self is any OnlineLearningRouter.Type ? forgetThunk : nil,
        familiarity: Plugin.self is any FamiliarityJudgingRouter.Type ? familiarityThunk : nil,
        sample: Plugin.self is any PosteriorSamplingRouter.Type ? sampleThunk : nil)
    withUnsafeBytes(of: &table) { UnsafeMutableRawPointer(out).copyMemory(from: $0.baseAddress!, byteCount: written) }
    return RP_OK
}

/// The factory of the one plugin type this image exports. Each plugin image
/// links its own copy of this module, so each has its own registry.
private let registry = Mutex<(@Sendable (PluginContext) throws -> any RouterPlugin)?>(nil)

/// Keeps an instance alive behind the opaque pointer the host holds.
private final class InstanceBox {
    let plugin: any RouterPlugin
    /// How many qualities `score_models` writes per prompt.
    let candidateCount: Int
    init(_ plugin: any RouterPlugin, candidateCount: Int) {
        self.plugin = plugin
        self.candidateCount = candidateCount
    }
}

/// A C string that lives as long as the image (never freed: the image is never unloaded).
/// Kept in `staticStrings` so it stays reachable, which is what a leak checker asks.
private func staticCString(_ string: String) -> UnsafePointer<CChar> {
    staticStrings.withLock { strings in
        if let existing = strings[string] { return UnsafePointer(existing) }
        let copy = strdup(string)!
        strings[string] = copy
        return UnsafePointer(copy)
    }
}

/// Guarded because any host thread may ask for a description; the pointers are never freed.
private let staticStrings = Mutex<[String: UnsafeMutablePointer<CChar>]>([:])

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
            let strongModel = String(cString: details.strong_model)
            let weakModel = String(cString: details.weak_model)
            // A host of revision 1 names no candidates: its routers have exactly the strong and weak model.
            var candidates = [strongModel, weakModel]
            let revision2InfoSize = MemoryLayout<rp_instance_info>.offset(of: \rp_instance_info.state_dir)!
            if details.struct_size >= revision2InfoSize, let list = details.candidates, details.candidate_count >= 2 {
                candidates = (0..<details.candidate_count).map { String(cString: list[$0]!) }
            }
            var context = PluginContext(
                name: String(cString: details.name), params: params, strongModel: strongModel, weakModel: weakModel, candidates: candidates,
                embeddingDimension: details.embedding_dim, host: HostServices(table: host))
            // A host of revision 2 or older offers no state folder, and one of revision 5 or older no prices.
            let revision3InfoSize = MemoryLayout<rp_instance_info>.offset(of: \rp_instance_info.candidate_costs)!
            if details.struct_size >= revision3InfoSize, let folder = details.state_dir {
                context.stateDirectory = String(cString: folder)
            }
            if details.struct_size >= MemoryLayout<rp_instance_info>.size, let costs = details.candidate_costs {
                context.candidateCosts = Array(UnsafeBufferPointer(start: costs, count: candidates.count))
            }
            let plugin = try factory(context)
            instance.pointee = Unmanaged.passRetained(InstanceBox(plugin, candidateCount: context.candidates.count)).toOpaque()
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
        func prompt(_ index: Int) -> Prompt { Prompt(prompts![index]) }
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

private let scoreModelsThunk:
    @convention(c) (
        UnsafeMutableRawPointer?, UnsafePointer<rp_prompt>?, Int, UnsafeMutablePointer<Double>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> Int32 = { instance, prompts, count, qualities, error in
        guard let instance, let qualities, count == 0 || prompts != nil else { return RP_ERROR }
        let box = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue()
        guard let plugin = box.plugin as? any QualityPredictingRouter else { return RP_ERROR }
        let width = box.candidateCount
        do {
            for index in 0..<count {
                let values = try plugin.qualities(Prompt(prompts![index]))
                guard values.count == width else {
                    throw PluginError("the plugin predicted \(values.count) qualities for \(width) candidates")
                }
                for (column, value) in values.enumerated() { qualities[index * width + column] = value }
            }
            return RP_OK
        } catch let caught {
            error?.pointee = errorString(caught)
            return RP_ERROR
        }
    }

private let familiarityThunk:
    @convention(c) (
        UnsafeMutableRawPointer?, UnsafePointer<rp_prompt>?, Int, UnsafeMutablePointer<Double>?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> Int32 = { instance, prompts, count, familiarity, error in
        guard let instance, let familiarity, count == 0 || prompts != nil else { return RP_ERROR }
        guard let plugin = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue().plugin as? any FamiliarityJudgingRouter else {
            return RP_ERROR
        }
        do {
            for index in 0..<count {
                familiarity[index] = try plugin.familiarity(Prompt(prompts![index]))
            }
            return RP_OK
        } catch let caught {
            error?.pointee = errorString(caught)
            return RP_ERROR
        }
    }

private let sampleThunk:
    @convention(c) (
        UnsafeMutableRawPointer?, UnsafePointer<rp_prompt>?, Int, UInt64, UnsafeMutablePointer<Double>?,
        UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    ) -> Int32 = { instance, prompt, draws, seed, samples, error in
        guard let instance, let prompt, let samples else { return RP_ERROR }
        let box = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue()
        guard let plugin = box.plugin as? any PosteriorSamplingRouter else { return RP_ERROR }
        do {
            let values = try plugin.samples(Prompt(prompt.pointee), draws: draws, seed: seed)
            let width = 1 + box.candidateCount
            guard values.count == draws * width else {
                throw PluginError("the plugin drew \(values.count) values for \(draws) draws of \(width)")
            }
            for (index, value) in values.enumerated() { samples[index] = value }
            return RP_OK
        } catch let caught {
            error?.pointee = errorString(caught)
            return RP_ERROR
        }
    }

private let learnThunk:
    @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<rp_outcome>?, Int, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 = {
        instance, outcomes, count, error in
        guard let instance, count == 0 || outcomes != nil else { return RP_ERROR }
        guard let plugin = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue().plugin as? any OnlineLearningRouter else {
            return RP_ERROR
        }
        let learned = (0..<count).map { index in
            let raw = outcomes![index]
            let prompt = Prompt(raw.prompt)
            let value: LearnedOutcome.Value =
                raw.kind == RP_OUTCOME_PAIRWISE ? .pairwise(against: raw.against, score: raw.value) : .pointwise(raw.value)
            // Copied: the outcome outlives the call.
            return LearnedOutcome(prompt: prompt.text, embedding: prompt.embedding.map(Array.init), model: raw.model, value: value)
        }
        do {
            try plugin.learn(learned)
            return RP_OK
        } catch let caught {
            error?.pointee = errorString(caught)
            return RP_ERROR
        }
    }

private let forgetThunk: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 = {
    instance, error in
    guard let instance,
        let plugin = Unmanaged<InstanceBox>.fromOpaque(instance).takeUnretainedValue().plugin as? any OnlineLearningRouter
    else { return RP_ERROR }
    do {
        try plugin.forget()
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

extension Prompt {
    /// A prompt as the host passed it across the ABI: views of its text and embedding, valid for the call.
    init(_ raw: rp_prompt) {
        let text = UnsafeBufferPointer(start: UnsafeRawPointer(raw.text)?.assumingMemoryBound(to: UInt8.self), count: raw.text_len)
        self.init(utf8: text, embedding: raw.embedding.map { UnsafeBufferPointer(start: $0, count: raw.embedding_dim) })
    }
}
