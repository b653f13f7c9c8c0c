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

/// Watches a Server-Sent Events stream as its bytes pass through, unchanged, to the client:
/// it finds the `usage` of the last chunk and whether the stream ended with `data: [DONE]`.
///
/// SSE frames events with blank lines and marks data lines `data:`; chunks arrive cut anywhere,
/// so a line is held until its end arrives. A line longer than `maxLineBytes` is skipped, not
/// held: the client still gets it, the gateway just cannot price from it.
public struct StreamUsageScanner: Sendable {
    public private(set) var usage: Usage?
    public private(set) var sawDone = false
    /// Data lines seen: the stream's chunks.
    public private(set) var events = 0
    private var line: [UInt8] = []
    private var skipping = false
    private let maxLineBytes: Int

    public init(maxLineBytes: Int = 1 << 20) {
        self.maxLineBytes = maxLineBytes
    }

    public mutating func consume(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                if !skipping { finish(line) }
                line.removeAll(keepingCapacity: true)
                skipping = false
            } else if !skipping {
                line.append(byte)
                if line.count > maxLineBytes {
                    skipping = true
                    line.removeAll(keepingCapacity: false)
                }
            }
        }
    }

    private mutating func finish(_ raw: [UInt8]) {
        var text = raw[...]
        if text.last == UInt8(ascii: "\r") { text = text.dropLast() }
        guard text.starts(with: "data:".utf8) else { return }
        var data = text.dropFirst(5)
        if data.first == UInt8(ascii: " ") { data = data.dropFirst() }
        events += 1
        if data.elementsEqual("[DONE]".utf8) {
            sawDone = true
        } else if let chunk = try? JSONValue.parse(data), let found = Usage(of: chunk) {
            usage = found
        }
    }

    /// Whether a raw SSE event (its lines, without the blank line that ends it) is the usage-only
    /// chunk the gateway asked for on the client's behalf: no choices, and `usage`. A client that
    /// did not ask for usage is not sent it.
    public static func isUsageOnlyChunk(_ data: some Collection<UInt8>) -> Bool {
        guard case .object(let members)? = try? JSONValue.parse(data), members["usage"] != nil, members["usage"] != .null else { return false }
        if case .array(let choices)? = members["choices"] { return choices.isEmpty }
        return members["choices"] == nil
    }
}
