import Foundation
import RouterJSON
import RouterVocabulary

/// What a plugin's per-candidate qualities mean, so a policy weighs them against cost
/// correctly and a person reads them right.
public struct QualityScale: Sendable, Hashable {
    public enum Meaning: String, Sendable, CaseIterable {
        /// The chance the model's answer beats another candidate's, averaged over the other candidates.
        case winRate = "win_rate"
        /// The chance the model's answer is good (correct, accepted).
        case probability
        /// A score on the stated range, e.g. a judge's 1 to 10.
        case score
    }

    public var meaning: Meaning
    public var range: ClosedRange<Double>

    public init(meaning: Meaning, range: ClosedRange<Double> = 0...1) {
        self.meaning = meaning
        self.range = range
    }

    /// A win rate in [0, 1]: what a plugin that only knows pairwise preferences predicts.
    public static let winRate = QualityScale(meaning: .winRate)

    /// Each model's chance of beating another, averaged over the others, from Bradley–Terry
    /// log-strengths: P(i beats j) = σ(θᵢ − θⱼ). For two models these are p and 1 − p.
    public static func winRates(strengths: [Double]) -> [Double] {
        guard strengths.count > 1 else { return strengths.map { _ in 0.5 } }
        return strengths.indices.map { i in
            var total = 0.0
            for j in strengths.indices where j != i { total += 1 / (1 + exp(strengths[j] - strengths[i])) }
            return total / Double(strengths.count - 1)
        }
    }

    var json: JSONValue {
        .object(["meaning": .string(meaning.rawValue), "range": .array([.number(range.lowerBound), .number(range.upperBound)])])
    }

    init(json: JSONValue) throws(RouterDescriptionError) {
        let known = Meaning.allCases.map(\.rawValue).joined(separator: ", ")
        guard let members = json.objectValue, let name = members["meaning"]?.stringValue, let meaning = Meaning(rawValue: name) else {
            throw RouterDescriptionError("'\(MetadataKey.quality)' must be an object with 'meaning' (one of \(known)) and 'range' [low, high]")
        }
        var range: ClosedRange<Double> = 0...1
        if let bounds = members["range"], bounds != .null {
            guard let values = bounds.arrayValue?.compactMap(\.doubleValue), values.count == 2, values[0].isFinite, values[1].isFinite,
                values[0] < values[1]
            else {
                throw RouterDescriptionError("'\(MetadataKey.quality)'.range must be two finite numbers [low, high] with low < high")
            }
            range = values[0]...values[1]
        }
        self.init(meaning: meaning, range: range)
    }
}

/// A description that breaks the contract, and why.
public struct RouterDescriptionError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What a plugin says about one of its instances.
///
/// On the C ABI it travels as a JSON object (`describe`). The host parses it
/// once, when the instance is created, into this value: the fields the host
/// relies on are typed and checked, and everything else is kept as free-form
/// `details` for people (the `routers` reply).
public struct RouterDescription: Sendable, Hashable {
    /// ``MetadataKey/scoreQuantiles`` for the instance's strong/weak pair, when the plugin has them.
    public var scoreQuantiles: [Double]?
    /// The models the instance can rank (``MetadataKey/models``).
    public var models: [String]?
    /// The embedding dimension the instance expects (``MetadataKey/embeddingDimension``).
    public var embeddingDimension: Int?
    /// What the instance's per-candidate qualities mean (``MetadataKey/quality``); a
    /// ``QualityPredictingRouter`` that states none predicts ``QualityScale/winRate``.
    public var quality: QualityScale?
    /// Everything else the plugin said, by key.
    public var details: [String: JSONValue]

    public init(
        scoreQuantiles: [Double]? = nil, models: [String]? = nil, embeddingDimension: Int? = nil, quality: QualityScale? = nil,
        details: [String: JSONValue] = [:]
    ) {
        self.scoreQuantiles = scoreQuantiles
        self.models = models
        self.embeddingDimension = embeddingDimension
        self.quality = quality
        self.details = details
    }

    /// Parses and checks a description's JSON text.
    public init(json: some Collection<UInt8>) throws(RouterDescriptionError) {
        let value: JSONValue
        do {
            value = try JSONValue.parse(json)
        } catch {
            throw RouterDescriptionError("describe returned text that is not JSON: \(String(decoding: json.prefix(120), as: UTF8.self))")
        }
        guard var members = value.objectValue else {
            throw RouterDescriptionError("describe must return a JSON object, not \(value.text.prefix(60))")
        }
        if let quantiles = members.removeValue(forKey: MetadataKey.scoreQuantiles), quantiles != .null {
            guard let values = quantiles.arrayValue?.compactMap(\.doubleValue), values.count == quantiles.arrayValue?.count else {
                throw RouterDescriptionError("'\(MetadataKey.scoreQuantiles)' must be a list of numbers")
            }
            scoreQuantiles = values
        }
        if let models = members.removeValue(forKey: MetadataKey.models), models != .null {
            guard let names = models.arrayValue?.compactMap(\.stringValue), names.count == models.arrayValue?.count else {
                throw RouterDescriptionError("'\(MetadataKey.models)' must be a list of model names")
            }
            self.models = names
        }
        if let dimension = members.removeValue(forKey: MetadataKey.embeddingDimension), dimension != .null {
            guard let number = dimension.integerValue, number >= 0, let exact = Int(exactly: number) else {
                throw RouterDescriptionError("'\(MetadataKey.embeddingDimension)' must be a non-negative integer")
            }
            embeddingDimension = exact
        }
        if let quality = members.removeValue(forKey: MetadataKey.quality), quality != .null {
            self.quality = try QualityScale(json: quality)
        }
        details = members
        try validate()
    }

    /// Checks the contract: quantiles are at least two non-decreasing scores in [0, 1].
    public func validate() throws(RouterDescriptionError) {
        if let quantiles = scoreQuantiles {
            guard quantiles.count >= 2 else {
                throw RouterDescriptionError("'\(MetadataKey.scoreQuantiles)' needs at least 2 values, found \(quantiles.count)")
            }
            guard quantiles.allSatisfy({ (0...1).contains($0) }) else {
                throw RouterDescriptionError("'\(MetadataKey.scoreQuantiles)' must lie in [0, 1]")
            }
            guard zip(quantiles, quantiles.dropFirst()).allSatisfy({ $0 <= $1 }) else {
                throw RouterDescriptionError("'\(MetadataKey.scoreQuantiles)' must be non-decreasing")
            }
        }
    }

    /// The whole description as one JSON object: the typed fields under their keys, and the details.
    public var object: [String: JSONValue] {
        var members = details
        if let scoreQuantiles { members[MetadataKey.scoreQuantiles] = .array(scoreQuantiles.map(JSONValue.number)) }
        if let models { members[MetadataKey.models] = .array(models.map(JSONValue.string)) }
        if let embeddingDimension { members[MetadataKey.embeddingDimension] = .integer(Int64(embeddingDimension)) }
        if let quality { members[MetadataKey.quality] = quality.json }
        return members
    }

    /// The JSON text a plugin hands the host.
    public var json: String { JSONValue.object(object).text }
}
