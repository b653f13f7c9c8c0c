import RouterJSON

/// Tokens a completion used, as the upstream reported them in `usage`: what the gateway prices
/// with the catalogue, rather than the estimate a decision was made on.
public struct Usage: Sendable, Hashable {
    public var promptTokens: Int
    public var completionTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    /// The `usage` of a response or chunk object, when it has one with both counts.
    public init?(of object: JSONValue) {
        guard case .object(let members) = object, case .object(let usage)? = members["usage"],
            let prompt = usage["prompt_tokens"]?.integerValue, let completion = usage["completion_tokens"]?.integerValue,
            prompt >= 0, completion >= 0, prompt <= Int64(Int32.max), completion <= Int64(Int32.max)
        else { return nil }
        promptTokens = Int(prompt)
        completionTokens = Int(completion)
    }

    /// The `usage` of a whole (non-streamed) response body.
    public init?(responseBody bytes: some Collection<UInt8>) {
        guard let parsed = try? JSONValue.parse(bytes) else { return nil }
        self.init(of: parsed)
    }

    /// USD at these prices, per million prompt and output tokens.
    public func cost(inputPrice: Double, outputPrice: Double) -> Double {
        (Double(promptTokens) * inputPrice + Double(completionTokens) * outputPrice) / 1_000_000
    }
}

/// Passes an upstream's Server-Sent Events stream to the client as its bytes arrive, changing
/// only what the gateway must: each chunk's `model` becomes the model's catalogue name, and the
/// usage-only chunk the gateway asked for on the client's behalf is dropped unless the client
/// asked for it too. On the way it finds the `usage` of the last chunk (the real cost) and
/// whether the stream ended with `data: [DONE]`.
///
/// SSE frames events with blank lines and marks data lines `data:`; chunks arrive cut anywhere,
/// so a line is held until its end arrives (a line, never the stream). A line longer than
/// `maxLineBytes` is passed on as it comes, unchanged: the client still gets it whole, the
/// gateway just cannot read it.
public struct StreamRelay: Sendable {
    public private(set) var usage: Usage?
    public private(set) var sawDone = false
    /// Data lines seen: the stream's chunks.
    public private(set) var events = 0
    private let model: String?
    private let keepUsageChunk: Bool
    private var line: [UInt8] = []
    private var passingThrough = false
    /// A usage-only event was dropped: the blank line that ends it goes too.
    private var droppingEventEnd = false
    private let maxLineBytes: Int

    /// - Parameters:
    ///   - model: the name each chunk's `model` becomes; nil leaves chunks as they are.
    ///   - keepUsageChunk: whether the client asked for usage (`stream_options.include_usage`).
    public init(model: String? = nil, keepUsageChunk: Bool = true, maxLineBytes: Int = 1 << 20) {
        self.model = model
        self.keepUsageChunk = keepUsageChunk
        self.maxLineBytes = maxLineBytes
    }

    /// The bytes to send the client for `bytes` from the upstream: whole lines, as they end.
    public mutating func relay(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        for byte in bytes {
            if passingThrough {
                output.append(byte)
                if byte == UInt8(ascii: "\n") { passingThrough = false }
                continue
            }
            line.append(byte)
            if byte == UInt8(ascii: "\n") {
                finish(into: &output)
                line.removeAll(keepingCapacity: true)
            } else if line.count > maxLineBytes {
                output += line
                line.removeAll(keepingCapacity: false)
                passingThrough = true
                droppingEventEnd = false
            }
        }
        return output
    }

    /// What is held of an unfinished last line, for a stream that ends without its newline.
    public mutating func flush() -> [UInt8] {
        defer { line.removeAll() }
        return line
    }

    /// One whole line (with its newline): passed on, rewritten or dropped.
    private mutating func finish(into output: inout [UInt8]) {
        var text = line.dropLast()
        if text.last == UInt8(ascii: "\r") { text = text.dropLast() }
        if text.isEmpty, droppingEventEnd {
            droppingEventEnd = false
            return
        }
        droppingEventEnd = false
        guard text.starts(with: "data:".utf8) else {
            output += line
            return
        }
        var data = text.dropFirst(5)
        if data.first == UInt8(ascii: " ") { data = data.dropFirst() }
        events += 1
        if data.elementsEqual("[DONE]".utf8) {
            sawDone = true
            output += line
            return
        }
        guard case .object(var members)? = try? JSONValue.parse(data) else {
            output += line
            return
        }
        if let found = Usage(of: .object(members)) {
            usage = found
            if !keepUsageChunk, Self.isUsageOnly(members) {
                droppingEventEnd = true
                return
            }
        }
        guard let model, members["model"] != nil else {
            output += line
            return
        }
        members["model"] = .string(model)
        var writer = JSONWriter(capacity: line.count + model.utf8.count)
        writer.value(.object(members))
        output += "data: ".utf8
        output += writer.bytes
        output.append(UInt8(ascii: "\n"))
    }

    private static func isUsageOnly(_ members: [String: JSONValue]) -> Bool {
        guard members["usage"] != nil, members["usage"] != .null else { return false }
        if case .array(let choices)? = members["choices"] { return choices.isEmpty }
        return members["choices"] == nil
    }

    /// Whether a raw SSE event's data is the usage-only chunk the gateway asks for on the
    /// client's behalf: no choices, and `usage`.
    public static func isUsageOnlyChunk(_ data: some Collection<UInt8>) -> Bool {
        guard case .object(let members)? = try? JSONValue.parse(data) else { return false }
        return isUsageOnly(members)
    }
}
