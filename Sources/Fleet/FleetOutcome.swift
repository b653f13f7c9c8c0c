import RouterEngine
import RouterJSON
import RouterVocabulary

/// An outcome as the fleet shares it: one line of the local outbox, and the same object as one row
/// of `routerd_outcomes` (the shipper hands the lines to PostgreSQL's `jsonb_to_recordset`
/// unchanged, so there is one encoding, here).
public enum FleetOutcome {
    /// The columns a line fills, with their SQL types, in the order of `jsonb_to_recordset`'s record.
    static let columns: [(name: String, type: String)] = [
        ("seq", "bigint"), ("router", "text"), ("prompt", "text"), ("model", "text"), ("kind", "text"),
        ("quality", "double precision"), ("against", "text"), ("result", "text"), ("decision_id", "text"),
        ("propensity", "double precision"), ("explored", "boolean"), ("acknowledged_at", "double precision"),
    ]

    /// The outbox line (without its newline) for `outcome`, number `seq` of its outbox,
    /// acknowledged at `time` (Unix seconds).
    public static func line(_ outcome: Outcome, seq: Int64, time: Double) -> [UInt8] {
        var members: [String: JSONValue] = [
            "seq": .integer(seq), "router": .string(outcome.router), "prompt": .string(outcome.prompt),
            "model": .string(outcome.model), "acknowledged_at": .number((time * 1000).rounded() / 1000),
        ]
        switch outcome.value {
        case .pointwise(let quality):
            members["kind"] = "pointwise"
            members["quality"] = .number(quality)
        case .failed:
            members["kind"] = "failed"
        case .pairwise(let result, let against):
            members["kind"] = "pairwise"
            members["result"] = .string(result.rawValue)
            members["against"] = .string(against)
        }
        if let id = outcome.decisionID { members["decision_id"] = .string(id) }
        if let propensity = outcome.propensity { members["propensity"] = .number(propensity) }
        if let explored = outcome.explored { members["explored"] = .bool(explored) }
        var writer = JSONWriter(capacity: 128 + outcome.prompt.utf8.count)
        writer.value(.object(members))
        return writer.bytes
    }

    /// An outbox line's seq, without decoding the rest (the outbox is read back only to find where it ended).
    static func seq(ofLine line: some Collection<UInt8>) -> Int64? {
        guard case .object(let members)? = try? JSONValue.parse(line) else { return nil }
        return members["seq"]?.integerValue
    }

    /// The outcome a row read back from `routerd_outcomes` describes (columns as ``tailColumns``),
    /// or nil for a row this routerd cannot read (a newer kind): such a row is skipped, not fatal.
    static func outcome(fromRow row: [String?]) -> (outcome: Outcome, acknowledgedAt: Double)? {
        guard row.count == tailColumns.count, let router = row[2], let prompt = row[3], let model = row[4], let kind = row[5],
            let acknowledged = row[12].flatMap(Double.init)
        else { return nil }
        let value: OutcomeValue
        switch kind {
        case "pointwise":
            guard let quality = row[6].flatMap(Double.init) else { return nil }
            value = .pointwise(quality)
        case "failed":
            value = .failed
        case "pairwise":
            guard let against = row[7], let result = row[8].flatMap(PairwiseResult.init(rawValue:)) else { return nil }
            value = .pairwise(result, against: against)
        default:
            return nil
        }
        var outcome = Outcome(router: router, prompt: prompt, decisionID: row[9], model: model, value: value)
        outcome.propensity = row[10].flatMap(Double.init)
        outcome.explored = row[11].map { $0 == "t" }
        return (outcome, acknowledged)
    }

    /// What the tailer selects, in the order ``outcome(fromRow:)`` reads.
    static let tailColumns = [
        "source", "seq", "router", "prompt", "model", "kind", "quality", "against", "result", "decision_id", "propensity", "explored",
        "acknowledged_at",
    ]
}
