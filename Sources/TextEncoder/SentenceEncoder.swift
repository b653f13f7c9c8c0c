import CBLAS
import CEncoderKernels
import CPackedLinear
import Foundation
import SafeTensors

/// How to embed a text longer than the model's 256-token window.
public enum LongTextPolicy: String, Sendable, CaseIterable, Codable {
    /// Keep the first 254 word pieces (the model's own behaviour).
    case head
    /// Keep the last 254 word pieces: the end of a prompt is usually the question.
    case tail
    /// Embed overlapping 256-token windows (stride 127 pieces), average, normalise.
    case windows
}

/// all-MiniLM-L6-v2, run locally: text in, 384-d L2-normalised sentence embedding out.
///
/// One loaded encoder is shared read-only by every thread.
public final class SentenceEncoder: Sendable {
    /// The model's window, [CLS] and [SEP] included.
    public static let maxTokens = 256
    public static let dimension = MiniLM.hidden
    /// Word pieces between windows' starts under `.windows`.
    static let windowStride = 127

    public let tokenizer: BertTokenizer
    public let modelDirectory: String
    let model: MiniLM

    /// The files a model directory must hold.
    public static let requiredFiles = ["model.safetensors", "vocab.txt"]

    /// Loads the model from a directory holding `model.safetensors` and `vocab.txt`, with its
    /// linear layers on `kernel`.
    public init(modelDirectory: String, kernel: LinearKernel = .onednn) throws(EncoderError) {
        for file in Self.requiredFiles where !FileManager.default.fileExists(atPath: modelDirectory + "/" + file) {
            throw EncoderError(
                "\(modelDirectory)/\(file) is missing; fetch the model with `make setup` (it runs scripts/fetch-model.sh)")
        }
        tokenizer = try BertTokenizer(vocabularyFile: modelDirectory + "/vocab.txt")
        do {
            model = try MiniLM(weights: try SafeTensorsFile(path: modelDirectory + "/model.safetensors"), kernel: kernel)
        } catch let error as EncoderError {
            throw error
        } catch {
            throw EncoderError("\(error); re-fetch the model with `rm -r \(modelDirectory) && make setup`")
        }
        guard model.vocabularySize == tokenizer.vocabularySize else {
            throw EncoderError(
                "\(modelDirectory): vocab.txt has \(tokenizer.vocabularySize) tokens but the weights have \(model.vocabularySize); the files do not belong together"
            )
        }
        self.modelDirectory = modelDirectory
    }

    /// Sets how many threads OpenBLAS and oneDNN use for one matrix product (process-wide).
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
        pl_set_threads(Int32(max(1, count)))
    }

    /// The library running the linear layers, and its own name for the implementation it chose
    /// (`status` shows it).
    public var kernel: LinearKernel { model.layers[0].qkvWeight.kernel }
    public var kernelImplementation: String { model.layers[0].qkvWeight.implementation }

    /// The token ids the model sees for `text`: [CLS], word pieces, [SEP], at most 256.
    /// `.windows` returns the first window.
    public func tokenIDs(_ text: String, policy: LongTextPolicy = .head) -> [Int32] {
        let pieces = tokenizer.wordPieces(text)
        return wrap(policy == .tail ? Array(pieces.suffix(Self.maxTokens - 2)) : Array(pieces.prefix(Self.maxTokens - 2)))
    }

    /// The embedding of one text.
    public func embed(_ text: String, policy: LongTextPolicy = .head) -> [Float] {
        embed([text], policy: policy)[0]
    }

    /// The embeddings of several texts, computed together.
    public func embed(_ texts: [String], policy: LongTextPolicy = .head) -> [[Float]] {
        let pieces = texts.map { tokenizer.wordPieces($0) }
        let window = Self.maxTokens - 2
        guard policy == .windows, pieces.contains(where: { $0.count > window }) else {
            let sequences = pieces.map { wrap(policy == .tail ? Array($0.suffix(window)) : Array($0.prefix(window))) }
            return model.embed(sequences)
        }
        // Every window of every text in one batch; then each text's windows are averaged.
        var sequences: [[Int32]] = []
        var ranges: [Range<Int>] = []
        for textPieces in pieces {
            let start = sequences.count
            for begin in Self.windowStarts(count: textPieces.count, window: window) {
                sequences.append(wrap(Array(textPieces[begin..<min(begin + window, textPieces.count)])))
            }
            ranges.append(start..<sequences.count)
        }
        let embeddings = model.embed(sequences)
        return ranges.map { range in
            if range.count == 1 { return embeddings[range.lowerBound] }
            let flat = embeddings[range].flatMap { $0 }
            let weights = [Float](repeating: 1 / Float(range.count), count: range.count)
            var out = [Float](repeating: 0, count: Self.dimension)
            ek_weighted_mean_normalize(flat, weights, range.count, Self.dimension, &out)
            return out
        }
    }

    /// Embeddings of token id sequences as `tokenIDs` returns them ([CLS] … [SEP], at most 512 ids each).
    public func embed(tokenSequences: [[Int32]]) throws(EncoderError) -> [[Float]] {
        for sequence in tokenSequences {
            guard sequence.count <= MiniLM.maxPositions else {
                throw EncoderError("a token sequence has \(sequence.count) ids; the model takes at most \(MiniLM.maxPositions)")
            }
            guard sequence.allSatisfy({ $0 >= 0 && Int($0) < model.vocabularySize }) else {
                throw EncoderError("token ids must be within 0..<\(model.vocabularySize)")
            }
        }
        return model.embed(tokenSequences)
    }

    /// Window starts covering `count` pieces: every `windowStride`, the last one flush with the end.
    static func windowStarts(count: Int, window: Int) -> [Int] {
        guard count > window else { return [0] }
        var starts = Array(stride(from: 0, to: count - window, by: windowStride))
        starts.append(count - window)
        return starts
    }

    private func wrap(_ pieces: [Int32]) -> [Int32] {
        [tokenizer.classifierID] + pieces + [tokenizer.separatorID]
    }
}
