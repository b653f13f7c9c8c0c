import RouterJSON
import RouterProtocol

/// What a request's `model` asks the gateway for.
public enum ModelTarget: Sendable, Hashable {
    /// Route with this router; `knob`, RouteLLM's number in `router-<name>-<number>`, is its
    /// threshold (or λ, or ε: the router's own), nil for the configured one.
    case router(String, knob: Double?)
    /// Call this catalogue model (its canonical name) directly, unrouted.
    case model(String)

    /// Resolves `model` against the routers and the catalogue.
    ///
    /// `router-<name>` names a router outright; otherwise RouteLLM's `router-<name>-<number>` is
    /// read as in the socket protocol (``RouterModelName``). Anything else must be a catalogue
    /// model or one of its aliases, which `canonical` maps to its name. A router whose own name
    /// ends in `-<number>` is found by its whole name first.
    public static func resolve(
        _ model: String, routers: Set<String>, canonical: (String) -> String?, known: @autoclosure () -> [String]
    ) throws(OpenAIError) -> ModelTarget {
        if model.hasPrefix("router-") {
            let name = String(model.dropFirst("router-".count))
            if routers.contains(name) { return .router(name, knob: nil) }
            if let parsed = RouterModelName(model), routers.contains(parsed.router) { return .router(parsed.router, knob: parsed.value) }
        }
        if let name = canonical(model) { return .model(name) }
        throw .unknownModel(model, known: known())
    }
}

/// `GET /v1/models`: each router as `router-<name>`, then the catalogue's models.
public enum ModelList {
    public static func body(routers: [String], models: [String], created: Int) -> [UInt8] {
        let entries = routers.sorted().map { ("router-\($0)", "routerd") } + models.sorted().map { ($0, "catalogue") }
        var writer = JSONWriter()
        writer.value(
            .object([
                "object": "list",
                "data": .array(
                    entries.map { id, owner in
                        .object(["id": .string(id), "object": "model", "created": .integer(Int64(created)), "owned_by": .string(owner)])
                    }),
            ]))
        return writer.bytes
    }
}
