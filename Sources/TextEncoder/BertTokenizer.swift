import Foundation

/// BERT's uncased WordPiece tokenizer, matching Hugging Face's BertTokenizer
/// (do_lower_case, tokenize_chinese_chars, strip accents) token for token.
///
/// Steps, as BertTokenizer does them: drop NUL, U+FFFD and control
/// characters and map whitespace to spaces; put spaces around CJK ideographs;
/// split on whitespace; lowercase, NFD-decompose and drop nonspacing marks;
/// split off punctuation; then greedy longest-match WordPiece with `##`
/// continuations, a word over 100 characters becoming `[UNK]`.
///
/// ASCII, the common case, takes a fast path that needs no Unicode tables.
public struct BertTokenizer: Sendable {
    public let unknownID: Int32
    public let classifierID: Int32
    public let separatorID: Int32
    public let vocabularySize: Int
    private let vocabulary: [String: Int32]
    private let tokensByID: [String]

    /// Words longer than this many characters become `[UNK]`.
    static let maxWordCharacters = 100

    public init(vocabularyFile: String) throws(EncoderError) {
        guard let data = FileManager.default.contents(atPath: vocabularyFile) else {
            throw EncoderError("cannot read the vocabulary \(vocabularyFile); run `make setup` (scripts/fetch-model.sh) to fetch the model")
        }
        // One token per line; the line number is the id. Keep empty lines so ids stay aligned.
        var lines = String(decoding: data, as: UTF8.self).components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        try self.init(tokens: lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }, source: vocabularyFile)
    }

    public init(tokens: [String], source: String = "vocabulary") throws(EncoderError) {
        var vocabulary: [String: Int32] = [:]
        vocabulary.reserveCapacity(tokens.count)
        for (index, token) in tokens.enumerated() where vocabulary[token] == nil {
            vocabulary[token] = Int32(index)
        }
        func id(_ token: String) throws(EncoderError) -> Int32 {
            guard let id = vocabulary[token] else { throw EncoderError("\(source) has no \(token) token; is it a BERT vocab.txt?") }
            return id
        }
        self.vocabulary = vocabulary
        self.tokensByID = tokens
        self.vocabularySize = tokens.count
        unknownID = try id("[UNK]")
        classifierID = try id("[CLS]")
        separatorID = try id("[SEP]")
    }

    /// The token text of an id (for debugging).
    public func token(_ id: Int32) -> String? { tokensByID.indices.contains(Int(id)) ? tokensByID[Int(id)] : nil }

    /// WordPiece ids of `text`, without [CLS]/[SEP]: all of them, or the first `limit`.
    ///
    /// With a limit the text is read only as far as it takes, so the cost of a long prompt's
    /// head is that of its head.
    public func wordPieces(_ text: String, limit: Int = .max) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(min(limit, text.utf8.count / 3 + 4))
        var word = WordBuffer()
        for scalar in text.unicodeScalars {
            // Pieces come out in order, so the first `limit` are final once there are that many.
            if ids.count >= limit { break }
            let value = scalar.value
            if value < 0x80 {
                let byte = UInt8(value)
                switch byte {
                case 0x20, 0x09, 0x0A, 0x0D:
                    flush(&word, into: &ids)
                case 0x00..<0x20, 0x7F:
                    continue  // control characters are dropped
                case 0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E:
                    flush(&word, into: &ids)
                    word.append(byte)
                    flush(&word, into: &ids)
                case 0x41...0x5A:
                    word.append(byte | 0x20)
                default:
                    word.append(byte)
                }
            } else {
                appendNonASCII(scalar, to: &word, ids: &ids)
            }
        }
        flush(&word, into: &ids)
        if ids.count > limit { ids.removeSubrange(limit...) }
        return ids
    }

    private func appendNonASCII(_ scalar: Unicode.Scalar, to word: inout WordBuffer, ids: inout [Int32]) {
        let value = scalar.value
        if value == 0xFFFD { return }
        let properties = scalar.properties
        switch properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned:
            return
        case .spaceSeparator, .lineSeparator, .paragraphSeparator:
            flush(&word, into: &ids)
            return
        default:
            break
        }
        if Self.isCJK(value) {
            flush(&word, into: &ids)
            word.append(scalar)
            flush(&word, into: &ids)
            return
        }
        // Lowercase (full mapping), then NFD, then drop nonspacing marks.
        let lowered = properties.changesWhenLowercased ? properties.lowercaseMapping : String(scalar)
        let decomposed = lowered.unicodeScalars.allSatisfy { $0.value < 0xC0 } ? lowered : lowered.decomposedStringWithCanonicalMapping
        for piece in decomposed.unicodeScalars {
            let category = piece.properties.generalCategory
            if category == .nonspacingMark { continue }
            if Self.isPunctuation(piece, category) {
                flush(&word, into: &ids)
                word.append(piece)
                flush(&word, into: &ids)
            } else {
                word.append(piece)
            }
        }
    }

    /// Runs WordPiece on the buffered word and clears it.
    private func flush(_ word: inout WordBuffer, into ids: inout [Int32]) {
        guard !word.isEmpty else { return }
        defer { word.removeAll() }
        if word.characterCount > Self.maxWordCharacters {
            ids.append(unknownID)
            return
        }
        if let id = lookup(word.bytes[...], continuation: false) {
            ids.append(id)
            return
        }
        // Greedy longest match, at character boundaries.
        let mark = ids.count
        var start = 0
        while start < word.bytes.count {
            var found: Int32?
            var endIndex = word.boundaries.count - 1
            while endIndex >= 0, word.boundaries[endIndex] > start {
                if let id = lookup(word.bytes[start..<word.boundaries[endIndex]], continuation: start > 0) {
                    found = id
                    break
                }
                endIndex -= 1
            }
            guard let id = found else {
                ids.removeSubrange(mark...)
                ids.append(unknownID)
                return
            }
            ids.append(id)
            start = word.boundaries[endIndex]
        }
    }

    private func lookup(_ bytes: ArraySlice<UInt8>, continuation: Bool) -> Int32? {
        let key = continuation ? "##" + String(decoding: bytes, as: UTF8.self) : String(decoding: bytes, as: UTF8.self)
        return vocabulary[key]
    }

    /// BERT's punctuation: all ASCII non-alphanumeric printable characters, and Unicode P*.
    private static func isPunctuation(_ scalar: Unicode.Scalar, _ category: Unicode.GeneralCategory) -> Bool {
        let value = scalar.value
        if (33...47).contains(value) || (58...64).contains(value) || (91...96).contains(value) || (123...126).contains(value) { return true }
        switch category {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation, .finalPunctuation,
            .otherPunctuation:
            return true
        default:
            return false
        }
    }

    /// The CJK Unified Ideographs blocks BERT splits into single characters.
    private static func isCJK(_ value: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(value) || (0x3400...0x4DBF).contains(value) || (0x20000...0x2A6DF).contains(value)
            || (0x2A700...0x2B73F).contains(value) || (0x2B740...0x2B81F).contains(value) || (0x2B820...0x2CEAF).contains(value)
            || (0xF900...0xFAFF).contains(value) || (0x2F800...0x2FA1F).contains(value)
    }
}

/// The word being assembled: its UTF-8 bytes and where each character ends.
///
/// Only the first 101 characters are kept: a longer word becomes `[UNK]` whatever follows, so a
/// megabyte without a space costs a count, not a megabyte of buffer.
private struct WordBuffer {
    var bytes: [UInt8] = []
    /// End offset (in `bytes`) of each character kept.
    var boundaries: [Int] = []
    /// Characters appended, kept or not.
    private(set) var characterCount = 0

    var isEmpty: Bool { characterCount == 0 }
    private var full: Bool { characterCount > BertTokenizer.maxWordCharacters }

    init() {
        bytes.reserveCapacity(64)
        boundaries.reserveCapacity(64)
    }

    mutating func append(_ byte: UInt8) {
        characterCount += 1
        guard !full else { return }
        bytes.append(byte)
        boundaries.append(bytes.count)
    }

    mutating func append(_ scalar: Unicode.Scalar) {
        characterCount += 1
        guard !full else { return }
        bytes.append(contentsOf: UTF8.encode(scalar)!)
        boundaries.append(bytes.count)
    }

    mutating func removeAll() {
        characterCount = 0
        bytes.removeAll(keepingCapacity: true)
        boundaries.removeAll(keepingCapacity: true)
    }
}
