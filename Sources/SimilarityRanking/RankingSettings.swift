import Foundation

/// How `sw_ranking` weighs the indexed battles for a query; the plugin's
/// parameters, the trainer's options, and (as `quantile_settings`) the
/// fingerprint of the score quantiles stored in an index.
public struct RankingSettings: Codable, Equatable, Sendable {
    /// What one similarity weight ω = γ^(1 + s / max s) applies to.
    public enum WeightUnit: String, Codable, Sendable, CaseIterable {
        /// Every battle weighs ω (RouteLLM). A prompt with many battles (arena-bench-v1
        /// judges 16 answers, 120 pairs) then outweighs a golden-label prompt with one.
        case battle
        /// A prompt's battles share ω, in proportion to their own weights, so every
        /// neighbouring prompt counts the same whatever its number of battles.
        case prompt
    }

    /// γ in ω = γ^(1 + s / max s); RouteLLM uses 10; 1 weighs every counted prompt the same.
    public var gamma: Double
    /// Weight of one virtual tied game per model, in units of the mean battle weight (see ``BradleyTerry/fit``).
    public var prior: Double
    /// How many of the most similar indexed prompts count; `nil` counts every
    /// prompt, as RouteLLM does. With few labels per prompt, far-away prompts
    /// add mostly noise even at tiny weights, because there are so many of them.
    public var neighbors: Int?
    public var weightUnit: WeightUnit

    public init(gamma: Double = 10, prior: Double = 1, neighbors: Int? = nil, weightUnit: WeightUnit = .battle) {
        self.gamma = gamma
        self.prior = prior
        self.neighbors = neighbors
        self.weightUnit = weightUnit
    }

    enum CodingKeys: String, CodingKey {
        case gamma, prior, neighbors
        case weightUnit = "weight_unit"
    }

    /// Why these settings cannot be used, or nil.
    public var problem: String? {
        if !(gamma >= 1 && gamma.isFinite) { return "gamma must be a number of at least 1 (RouteLLM uses 10), not \(gamma)" }
        if !(prior > 0 && prior.isFinite) { return "prior must be a positive number, not \(prior)" }
        if let neighbors, neighbors < 1 { return "neighbors must be at least 1, not \(neighbors); leave it out to count every prompt" }
        return nil
    }

    /// The metadata key under which an index records the settings its quantiles were computed with.
    public static let metadataKey = "quantile_settings"

    /// These settings as an index stores them (metadata ``metadataKey``): a JSON object.
    public func stored() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// The settings an index's stored quantiles were computed with: a JSON object,
    /// or `[gamma, prior]` as indexes written before the other settings existed say.
    public static func decodeStored(_ json: String) -> RankingSettings? {
        let decoder = JSONDecoder()
        if let settings = try? decoder.decode(RankingSettings.self, from: Data(json.utf8)) { return settings }
        if let legacy = try? decoder.decode([Double].self, from: Data(json.utf8)), legacy.count == 2 {
            return RankingSettings(gamma: legacy[0], prior: legacy[1])
        }
        return nil
    }
}
