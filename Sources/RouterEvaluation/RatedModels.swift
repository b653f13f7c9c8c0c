import RouterConfig
import TrainingRows

/// The models of a quality file that a many-model evaluation compares: those rated on at least 95%
/// of its rows and priced in the catalogue, so that every router is scored on the same prompts and
/// every model's cost is known.
public struct RatedModels: Sendable {
    /// The share of rows a model must be rated on.
    public static let coverage = 0.95
    /// The models compared, in name order.
    public let models: [String]
    /// Models rated on fewer rows, left out.
    public let sparse: [String]
    /// Models rated often enough but without a price, left out.
    public let unpriced: [String]

    public init(records: [QualityRecord], catalogue: ModelCatalogue) {
        var counts: [String: Int] = [:]
        for record in records { for model in record.quality.keys { counts[model, default: 0] += 1 } }
        let rated = Set(counts.filter { Double($0.value) >= Self.coverage * Double(records.count) }.keys)
        sparse = Set(counts.keys).subtracting(rated).sorted()
        unpriced = rated.filter { catalogue.model(named: $0) == nil }.sorted()
        models = rated.subtracting(unpriced).sorted()
    }

    /// The rows that rate every compared model.
    public func complete(_ records: [QualityRecord]) -> [QualityRecord] {
        records.filter { record in models.allSatisfy { record.quality[$0] != nil } }
    }
}
