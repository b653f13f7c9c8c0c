import Foundation
import RouterJSON

/// Why logged outcomes could not be read or evaluated, in words an operator can act on.
public struct OffPolicyError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// One routed decision and the outcome a service reported for it: the logged action, its
/// reward, and the probability with which the logging policy chose it.
public struct LoggedOutcome: Sendable, Hashable {
    public var decisionID: String
    public var router: String
    /// The prompt's text; nil when the store logged only its hash (`feedback.include_prompt` off).
    public var prompt: String?
    public var model: String
    /// The reported quality in [0, 1]; a failed call is 0.
    public var quality: Double
    /// The probability the logging policy chose `model`: the row's `propensity`, or 1 when the
    /// router did not explore (a deterministic policy).
    public var propensity: Double
    public var failed: Bool

    public init(
        decisionID: String, router: String, prompt: String?, model: String, quality: Double, propensity: Double, failed: Bool = false
    ) {
        self.decisionID = decisionID
        self.router = router
        self.prompt = prompt
        self.model = model
        self.quality = quality
        self.propensity = propensity
        self.failed = failed
    }
}

/// The feedback store's `quality.jsonl` read as logged decisions for off-policy evaluation.
///
/// Only rows that name a decision are decisions a policy made; rows reported by prompt, and
/// pairwise rows (`battles.jsonl`), are counted and left out. When one decision was reported
/// more than once, its last report stands.
public enum OutcomeLog {
    public struct Reading: Sendable {
        /// In the order their decisions were first reported.
        public var outcomes: [LoggedOutcome]
        /// Rows about a prompt rather than a decision: no policy chose their model.
        public var withoutDecision = 0
        /// Reports replaced by a later report on the same decision.
        public var replaced = 0
        /// Rows of pairwise outcomes (`battles.jsonl`), which reward no single choice.
        public var pairwise = 0
        /// Decisions without a logged propensity, taken as chosen with certainty.
        public var withoutPropensity = 0
    }

    /// Reads `folder/quality.jsonl` (and counts `folder/battles.jsonl`); a malformed line is an
    /// error naming its file and line, since an estimate silently missing rows would mislead.
    public static func read(folder: String) throws(OffPolicyError) -> Reading {
        let qualityFile = folder + "/quality.jsonl"
        guard let data = FileManager.default.contents(atPath: qualityFile) else {
            throw OffPolicyError("\(qualityFile): cannot read it; give the folder of a routerd feedback store (feedback.directory)")
        }
        var reading = Reading(outcomes: [])
        var position: [String: Int] = [:]
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") }) else { continue }
            guard let row = (try? JSONValue.parse(line))?.objectValue else {
                throw OffPolicyError("\(qualityFile):\(lineNumber): not a JSON object")
            }
            guard let id = row["decision_id"]?.stringValue else {
                reading.withoutDecision += 1
                continue
            }
            let outcome = try outcome(row, id: id, at: "\(qualityFile):\(lineNumber)")
            if outcome.propensity == 1, row["propensity"] == nil { reading.withoutPropensity += 1 }
            if let index = position[id] {
                reading.outcomes[index] = outcome
                reading.replaced += 1
            } else {
                position[id] = reading.outcomes.count
                reading.outcomes.append(outcome)
            }
        }
        if let battles = FileManager.default.contents(atPath: folder + "/battles.jsonl") {
            reading.pairwise = battles.split(separator: UInt8(ascii: "\n")).count
        }
        return reading
    }

    private static func outcome(_ row: [String: JSONValue], id: String, at place: String) throws(OffPolicyError) -> LoggedOutcome {
        guard let router = row["router"]?.stringValue else { throw OffPolicyError("\(place): a decision's row without 'router'") }
        guard let qualities = row["quality"]?.objectValue, qualities.count == 1, let (model, value) = qualities.first,
            let quality = value.doubleValue, (0...1).contains(quality)
        else {
            throw OffPolicyError("\(place): expected 'quality' to hold one model's value in [0, 1]")
        }
        var propensity = 1.0
        if let logged = row["propensity"] {
            guard let value = logged.doubleValue, value > 0, value <= 1 else {
                throw OffPolicyError("\(place): 'propensity' must be a number in (0, 1], found \(logged.text)")
            }
            propensity = value
        }
        return LoggedOutcome(
            decisionID: id, router: router, prompt: row["prompt"]?.stringValue, model: model, quality: quality, propensity: propensity,
            failed: row["outcome"]?.stringValue == "failed")
    }
}
