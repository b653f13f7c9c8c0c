/// Why the engine could not answer, as a value the daemon maps to the wire's
/// error codes. Each case's ``message`` says what to do about it.
public enum EngineError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No router of the generation has this name.
    case unknownRouter(name: String, known: [String])
    /// The router's plugin failed or returned something out of contract.
    case plugin(router: String, message: String)
    /// No encoder of the generation has this name.
    case unknownEncoder(name: String, known: [String])
    /// Several encoders are configured and none was named.
    case encoderNotNamed(known: [String])
    /// The config has no encoders.
    case noEncoders
    /// A `set` the router cannot take (a strong share without published quantiles).
    case invalidSetting(String)
    /// A `feedback` named a decision that was never made or is no longer remembered.
    case unknownDecision(id: String, ttlSeconds: Double?)
    /// A `feedback` named a model that is not a candidate of the decision's router.
    case unknownModel(name: String, known: [String])
    /// A reload was rejected; `generation` keeps serving (or, in a dry run, nothing changed).
    case reloadRejected(generation: UInt64, problems: [String], dryRun: Bool)
    /// A feedback report this peer may not make.
    case reportForbidden(String)
    /// A request over a limit that bounds its cost; the message names the limit.
    case tooLarge(String)

    public var message: String {
        switch self {
        case .unknownRouter(let name, let known):
            return "unknown router '\(name)' (routers: \(known.joined(separator: ", ")))"
        case .plugin(let router, let message):
            return "router '\(router)': \(message)"
        case .unknownEncoder(let name, let known):
            return "unknown encoder '\(name)' (encoders: \(known.isEmpty ? "none" : known.joined(separator: ", ")))"
        case .encoderNotNamed(let known):
            return "missing field 'encoder' (encoders: \(known.joined(separator: ", ")))"
        case .noEncoders:
            return "no encoders are configured"
        case .invalidSetting(let message):
            return message
        case .unknownDecision(let id, let ttl):
            guard let ttl else { return "unknown decision_id '\(id)': this daemon remembers no decisions (the config has no 'feedback:')" }
            return
                "unknown decision_id '\(id)': no decision with this id asked for by this peer in the last \(Int(ttl)) s (feedback.decisions.ttl)"
        case .unknownModel(let name, let known):
            return "unknown model '\(name)': not a candidate of the decision's router (candidates: \(known.joined(separator: ", ")))"
        case .reloadRejected(let generation, let problems, let dryRun):
            return (dryRun ? "the config is not valid (dry run; nothing changed):\n" : "reload rejected, generation \(generation) keeps serving:\n")
                + problems.joined(separator: "\n")
        case .reportForbidden(let message), .tooLarge(let message):
            return message
        }
    }

    public var description: String { message }
}
