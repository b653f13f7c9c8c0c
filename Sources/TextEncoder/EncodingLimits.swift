/// What one request may make the encoder do. Every text is a full transformer pass per window of
/// 256 positions, so a request's cost is the positions it embeds: bounding them bounds its time
/// and memory, whatever the client sends.
public struct EncodingLimits: Sendable, Hashable {
    /// Windows one text may take under `long_text: windows` (`limits.max_windows`).
    public var maxWindows: Int
    /// Model positions ([CLS], word pieces, [SEP]) one request may embed, summed over its texts
    /// and their windows (`limits.max_tokens`). Cached texts cost nothing.
    public var maxTokens: Int

    public init(maxWindows: Int, maxTokens: Int) {
        self.maxWindows = max(1, maxWindows)
        self.maxTokens = max(1, maxTokens)
    }

    /// No limit: for training and evaluation, where the texts are the operator's own.
    public static let none = EncodingLimits(maxWindows: .max / 1024, maxTokens: .max)

    /// Word pieces a text may have to fit in `maxWindows` windows of `window` pieces whose starts
    /// are `stride` apart.
    func maxPieces(window: Int, stride: Int) -> Int {
        maxWindows >= Int.max / 1024 ? .max : window + (maxWindows - 1) * stride
    }
}

/// A request over one of its ``EncodingLimits``; the message names the limit and what to change.
public struct EncodingLimitError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A text as the model sees it: the token ids of each window, [CLS] and [SEP] included.
public struct TokenizedText: Sendable, Hashable {
    public var windows: [[Int32]]

    /// Model positions embedding it takes: what it costs against `limits.max_tokens`.
    public var positions: Int { windows.reduce(0) { $0 + $1.count } }
}
