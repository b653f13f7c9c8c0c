import Foundation
import RouterJSON
import RouterVocabulary

// The two training-row formats, one codec each: the feedback store and `routerctl label` write
// them, the trainers and the evaluation read them (docs/TRAINING.md describes both).
//
// - battles: `{prompt, model_a, model_b, winner}`, winner `model_a`, `model_b`, `tie` (or Chatbot
//   Arena's `tie (bothbad)`, read as a tie);
// - quality: `{prompt, quality: {model: value}}`.
//
// Other fields (`router`, `time`, `source`, `decision_id`, `judge`, …) are kept beside them as
// `extra` and ignored by readers.

/// A row that cannot be read, naming the file and line.
public struct TrainingRowError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Who did better in a battle: the `winner` field.
public enum BattleWinner: String, Sendable, Hashable, CaseIterable {
    case modelA = "model_a"
    case modelB = "model_b"
    case tie

    /// The field's value as written; `tie (bothbad)` is a tie.
    public init?(field: String) {
        if field == "tie (bothbad)" {
            self = .tie
        } else {
            self.init(rawValue: field)
        }
    }

    /// The winner when `model_a` had `result` against `model_b`.
    public init(_ result: PairwiseResult) {
        switch result {
        case .win: self = .modelA
        case .loss: self = .modelB
        case .tie: self = .tie
        }
    }
}

/// How a row names its prompt: the text, or only its hash (`prompt_hash`, FNV-1a hex) when the
/// writer keeps no prompt text. Trainers need the text.
public enum RowPrompt: Sendable, Hashable {
    case text(String)
    case hash(String)
}

/// One battles row.
public struct BattleRow: Sendable, Hashable {
    public var prompt: RowPrompt
    public var modelA: String
    public var modelB: String
    public var winner: BattleWinner
    public var extra: [String: JSONValue]

    public init(prompt: RowPrompt, modelA: String, modelB: String, winner: BattleWinner, extra: [String: JSONValue] = [:]) {
        self.prompt = prompt
        self.modelA = modelA
        self.modelB = modelB
        self.winner = winner
        self.extra = extra
    }

    /// The row as one JSON line, with its newline.
    public func line() -> [UInt8] {
        var fields = extra
        fields.merge(prompt.fields) { $1 }
        fields["model_a"] = .string(modelA)
        fields["model_b"] = .string(modelB)
        fields["winner"] = .string(winner.rawValue)
        return Self.encode(fields)
    }

    static func encode(_ fields: [String: JSONValue]) -> [UInt8] {
        var writer = JSONWriter(capacity: 256)
        writer.value(.object(fields))
        writer.newline()
        return writer.bytes
    }
}

/// One quality row: each named model's quality on the prompt.
public struct QualityRow: Sendable, Hashable {
    public var prompt: RowPrompt
    public var quality: [String: Double]
    public var extra: [String: JSONValue]

    public init(prompt: RowPrompt, quality: [String: Double], extra: [String: JSONValue] = [:]) {
        self.prompt = prompt
        self.quality = quality
        self.extra = extra
    }

    /// The row as one JSON line, with its newline.
    public func line() -> [UInt8] {
        var fields = extra
        fields.merge(prompt.fields) { $1 }
        fields["quality"] = .object(quality.mapValues { .number($0) })
        return BattleRow.encode(fields)
    }
}

extension RowPrompt {
    var fields: [String: JSONValue] {
        switch self {
        case .text(let text): ["prompt": .string(text)]
        case .hash(let hash): ["prompt_hash": .string(hash)]
        }
    }
}

/// A prompt and each model's quality on it, as read from a quality file (the prompt's text is required).
public struct QualityRecord: Sendable {
    public var prompt: String
    public var quality: [String: Double]

    public init(prompt: String, quality: [String: Double]) {
        self.prompt = prompt
        self.quality = quality
    }
}

/// A battle as read from a battles file (the prompt's text is required).
public struct BattleRecord: Sendable, Hashable {
    public var prompt: String
    public var modelA: String
    public var modelB: String
    public var winner: BattleWinner

    public init(prompt: String, modelA: String, modelB: String, winner: BattleWinner) {
        self.prompt = prompt
        self.modelA = modelA
        self.modelB = modelB
        self.winner = winner
    }
}

/// Reading quality files (the format of mmlu-pro.quality.jsonl, the feedback store's
/// quality.jsonl and users' own benchmarks): every reader in the package goes through this.
public enum QualityFile {
    public static func read(_ file: String) throws(TrainingRowError) -> [QualityRecord] {
        var records: [QualityRecord] = []
        try JSONLines.forEachObject(in: file) { object, lineNumber throws(TrainingRowError) in
            guard let prompt = object["prompt"] as? String, let quality = object["quality"] as? [String: Any] else {
                throw TrainingRowError("\(file):\(lineNumber): expected {\"prompt\": …, \"quality\": {model: value}}")
            }
            records.append(QualityRecord(prompt: prompt, quality: quality.compactMapValues { ($0 as? NSNumber)?.doubleValue }))
        }
        return records
    }

    /// True when the file's first line is a quality row.
    public static func matches(_ file: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: file), let head = try? handle.read(upToCount: 65_536) else { return false }
        try? handle.close()
        guard let line = head.split(separator: UInt8(ascii: "\n")).first,
            let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any]
        else { return false }
        return object["quality"] is [String: Any]
    }
}

/// Reading battles files: every reader in the package goes through this.
public enum BattlesFile {
    public static func read(_ file: String) throws(TrainingRowError) -> [BattleRecord] {
        var records: [BattleRecord] = []
        try JSONLines.forEachObject(in: file) { object, lineNumber throws(TrainingRowError) in
            func field(_ name: String) throws(TrainingRowError) -> String {
                guard let value = object[name] as? String, !value.isEmpty else {
                    throw TrainingRowError("\(file):\(lineNumber): missing or empty string field '\(name)'")
                }
                return value
            }
            let prompt = try field("prompt")
            let modelA = try field("model_a")
            let modelB = try field("model_b")
            let winner = try field("winner")
            guard let parsed = BattleWinner(field: winner) else {
                throw TrainingRowError("\(file):\(lineNumber): unknown winner '\(winner)' (expected model_a, model_b, tie or tie (bothbad))")
            }
            guard modelA != modelB else { throw TrainingRowError("\(file):\(lineNumber): model_a and model_b are both '\(modelA)'") }
            records.append(BattleRecord(prompt: prompt, modelA: modelA, modelB: modelB, winner: parsed))
        }
        return records
    }
}

enum JSONLines {
    /// Each non-blank line of `file` as a JSON object, with its line number.
    static func forEachObject(
        in file: String, _ body: (_ object: [String: Any], _ lineNumber: Int) throws(TrainingRowError) -> Void
    ) throws(TrainingRowError) {
        guard let data = FileManager.default.contents(atPath: file) else { throw TrainingRowError("\(file): cannot read the file") }
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\t") }) { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw TrainingRowError("\(file):\(lineNumber): not a JSON object")
            }
            try body(object, lineNumber)
        }
    }
}
