import Foundation
import StableHash

/// A prompt to label, with its reference answer when the input carries one.
public struct LabelInput: Sendable, Hashable {
    public var prompt: String
    public var reference: String?
    /// Identifies the prompt across runs: `--output` rows carry it, so a rerun skips what is done.
    public var hash: String { FNV1a.hex(prompt) }

    public init(prompt: String, reference: String? = nil) {
        self.prompt = prompt
        self.reference = reference
    }
}

/// A problem with the input or output of labelling, naming the file and line.
public struct LabelError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum LabelInputReader {
    /// JSON lines with `prompt` and optionally `reference` (or `answer`, as GSM8K's files name it).
    /// A decision log written with `include_prompt` has this shape too. Repeated prompts are read once.
    public static func read(_ file: String) throws(LabelError) -> [LabelInput] {
        guard let data = FileManager.default.contents(atPath: file) else { throw LabelError("\(file): cannot read the file") }
        var inputs: [LabelInput] = []
        var seen: Set<String> = []
        for (number, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                throw LabelError("\(file):\(number + 1): not a JSON object")
            }
            guard let prompt = object["prompt"] as? String, !prompt.isEmpty else {
                throw LabelError("\(file):\(number + 1): no 'prompt' (a decision log needs decision_log.include_prompt: true)")
            }
            let reference = (object["reference"] ?? object["answer"]).map { value in (value as? String) ?? "\(value)" }
            if seen.insert(prompt).inserted { inputs.append(LabelInput(prompt: prompt, reference: reference)) }
        }
        return inputs
    }

    /// The `prompt_hash`es already in an output file; a torn last line (a killed run) is cut off.
    public static func done(in output: String) throws(LabelError) -> Set<String> {
        guard FileManager.default.fileExists(atPath: output) else { return [] }
        guard var data = FileManager.default.contents(atPath: output) else { throw LabelError("\(output): cannot read the file") }
        if let last = data.last, last != UInt8(ascii: "\n") {
            let keep = (data.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
            data = data.prefix(keep)
            guard truncate(output, off_t(keep)) == 0 else { throw LabelError("\(output): cannot cut off its torn last line") }
        }
        var done: Set<String> = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            if let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any], let hash = object["prompt_hash"] as? String {
                done.insert(hash)
            }
        }
        return done
    }
}
