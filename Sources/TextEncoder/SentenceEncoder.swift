import CBLAS
import CEncoderKernels
import CPackedLinear
import Foundation
import RouterVocabulary
import SafeTensors

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
    /// The linear layers' arithmetic.
    public let precision: EncoderPrecision
    /// How the precision was chosen: the accuracy gate's lowest cosine and, under `auto`, each
    /// candidate's time at load. Empty for an encoder loaded without the gate.
    public let precisionNote: String

    /// The files a model directory must hold.
    public static let requiredFiles = ["model.safetensors", "vocab.txt"]

    /// Loads the model from a directory holding `model.safetensors` and `vocab.txt`, with its
    /// linear layers on `kernel` in `precision`, without the accuracy gate (`load` applies it).
    /// int8 is calibrated on `PrecisionGate.calibrationTexts` run through the fp32 model.
    public convenience init(modelDirectory: String, kernel: LinearKernel = .onednn, precision: EncoderPrecision = .fp32) throws(EncoderError) {
        try self.init(modelDirectory: modelDirectory, kernel: kernel, precision: precision, calibratedOn: nil)
    }

    /// As above; `reference`, an fp32 encoder of the same model, calibrates int8 (nil: one is loaded).
    init(modelDirectory: String, kernel: LinearKernel, precision: EncoderPrecision, calibratedOn reference: SentenceEncoder?) throws(EncoderError) {
        for file in Self.requiredFiles where !FileManager.default.fileExists(atPath: modelDirectory + "/" + file) {
            throw EncoderError(
                "\(modelDirectory)/\(file) is missing; fetch the model with `make setup` (it runs scripts/fetch-model.sh)")
        }
        tokenizer = try BertTokenizer(vocabularyFile: modelDirectory + "/vocab.txt")
        var ranges: MiniLM.InputRanges?
        if precision == .int8 {
            let fp32: SentenceEncoder
            if let reference {
                fp32 = reference
            } else {
                fp32 = try SentenceEncoder(modelDirectory: modelDirectory, kernel: kernel, precision: .fp32, calibratedOn: nil)
            }
            ranges = fp32.model.inputRanges(of: PrecisionGate.calibrationTexts.map { fp32.tokenIDs($0) })
        }
        do {
            model = try MiniLM(
                weights: try SafeTensorsFile(path: modelDirectory + "/model.safetensors"), kernel: kernel, precision: precision,
                inputRanges: ranges)
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
        self.precision = precision
        precisionNote = ""
    }

    private init(_ other: SentenceEncoder, note: String) {
        tokenizer = other.tokenizer
        modelDirectory = other.modelDirectory
        model = other.model
        precision = other.precision
        precisionNote = note
    }

    /// Loads the model in the precision `setting` asks for. A precision other than fp32 must pass
    /// `PrecisionGate` against the fp32 model, or loading fails with the cosine it reached; `auto`
    /// times every precision this CPU and kernel run that passes, and keeps the fastest.
    public static func load(modelDirectory: String, kernel: LinearKernel = .onednn, precision setting: PrecisionSetting) throws(EncoderError)
        -> SentenceEncoder
    {
        // A precision this kernel or CPU cannot run is refused before anything is loaded.
        if case .fixed(let precision) = setting, precision != .fp32 {
            if let refusal = kernel.refusal(of: precision) { throw EncoderError(refusal) }
            if let why = precision.unsupportedReason { throw EncoderError("precision \(precision.rawValue): \(why); use fp32 or auto") }
        }
        let reference = try SentenceEncoder(modelDirectory: modelDirectory, kernel: kernel, precision: .fp32)
        func gated(_ precision: EncoderPrecision) throws(EncoderError) -> (encoder: SentenceEncoder, cosine: Float) {
            let candidate = try SentenceEncoder(modelDirectory: modelDirectory, kernel: kernel, precision: precision, calibratedOn: reference)
            let lowest = PrecisionGate.lowestCosine(of: candidate, to: reference)
            guard lowest.cosine >= PrecisionGate.minimumCosine else {
                throw EncoderError(
                    "precision \(precision.rawValue) fails the accuracy gate: its embedding of \(String(lowest.text.prefix(40)).debugDescription) has cosine \(format(lowest.cosine)) to fp32's, below \(PrecisionGate.minimumCosine); use precision: fp32"
                )
            }
            return (candidate, lowest.cosine)
        }
        switch setting {
        case .fixed(.fp32):
            return reference
        case .fixed(let precision):
            let passed = try gated(precision)
            return SentenceEncoder(passed.encoder, note: "gate: lowest cosine \(format(passed.cosine)) to fp32")
        case .auto:
            var best = (encoder: reference, milliseconds: reference.gateTextMilliseconds())
            var notes = ["fp32 \(format(best.milliseconds, digits: 1)) ms"]
            for precision in EncoderPrecision.allCases where precision != .fp32 {
                if kernel.refusal(of: precision) != nil {
                    notes.append("\(precision.rawValue) needs kernel onednn")
                    continue
                }
                if precision.unsupportedReason != nil {
                    notes.append("\(precision.rawValue) unsupported (oneDNN's instruction set: \(EncoderPrecision.cpuInstructionSet))")
                    continue
                }
                do {
                    let passed = try gated(precision)
                    let milliseconds = passed.encoder.gateTextMilliseconds()
                    notes.append("\(precision.rawValue) \(format(milliseconds, digits: 1)) ms, cosine \(format(passed.cosine))")
                    if milliseconds < best.milliseconds { best = (passed.encoder, milliseconds) }
                } catch {
                    notes.append("\(precision.rawValue) failed: \(error.message)")
                }
            }
            return SentenceEncoder(best.encoder, note: "auto, timed on the gate texts: " + notes.joined(separator: "; "))
        }
    }

    /// The best of three times to embed the gate texts in one batch, after a warm-up.
    private func gateTextMilliseconds() -> Double {
        _ = embed(PrecisionGate.texts)
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = embed(PrecisionGate.texts)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return best
    }

    /// Sets how many threads one matrix product uses (process-wide). With kernel `onednn` every
    /// product runs on oneDNN's OpenMP team and OpenBLAS keeps one thread: the two libraries'
    /// threads, spinning on the same cores, had slowed a 128-token prompt on 2 threads from 31 ms
    /// to 53–101 ms (`routerctl bench-encoder --threads 2`).
    public static func setThreads(_ count: Int, kernel: LinearKernel = .onednn) {
        openblas_set_num_threads(kernel == .openblas ? Int32(max(1, count)) : 1)
        pl_set_threads(Int32(max(1, count)))
    }

    /// The library running the linear layers, and its own name for the implementation it chose
    /// (`status` shows it).
    public var kernel: LinearKernel { model.layers[0].qkvWeight.kernel }
    public var kernelImplementation: String { model.layers[0].qkvWeight.implementation }

    /// Bytes the linear layers' weights take as their kernel holds them.
    public var linearWeightBytes: Int {
        model.layers.reduce(0) { $0 + $1.qkvWeight.bytes + $1.outputWeight.bytes + $1.intermediateWeight.bytes + $1.ffnOutputWeight.bytes }
    }

    /// The token ids the model sees for `text`: [CLS], word pieces, [SEP], at most 256.
    /// `.windows` returns the first window.
    public func tokenIDs(_ text: String, policy: LongTextPolicy = .head) -> [Int32] {
        tokenize(text, policy: policy == .tail ? .tail : .head).windows[0]
    }

    /// The embedding of one text.
    public func embed(_ text: String, policy: LongTextPolicy = .head) -> [Float] {
        embed([text], policy: policy)[0]
    }

    /// The embeddings of several texts, computed together, with no limits (the texts are the caller's own).
    public func embed(_ texts: [String], policy: LongTextPolicy = .head) -> [[Float]] {
        embed(tokenized: texts.map { tokenize($0, policy: policy) })
    }

    /// `text` as the model sees it under `policy`: its head or tail window, or every window.
    public func tokenize(_ text: String, policy: LongTextPolicy) -> TokenizedText {
        let window = Self.maxTokens - 2
        switch policy {
        case .head: return TokenizedText(windows: [wrap(tokenizer.wordPieces(text, limit: window))])
        case .tail: return TokenizedText(windows: [wrap(Array(tokenizer.wordPieces(text).suffix(window)))])
        case .windows: return windowed(tokenizer.wordPieces(text))
        }
    }

    /// As above, within `limits`: under `.windows` a text past `limits.maxWindows` windows is
    /// refused as soon as the tokenizer has read that far, before any pass.
    public func tokenize(_ text: String, policy: LongTextPolicy, limits: EncodingLimits) throws(EncodingLimitError) -> TokenizedText {
        guard policy == .windows else { return tokenize(text, policy: policy) }
        let most = limits.maxPieces(window: Self.maxTokens - 2, stride: Self.windowStride)
        let pieces = tokenizer.wordPieces(text, limit: most == .max ? .max : most + 1)
        guard pieces.count <= most else {
            throw EncodingLimitError(
                "a text of more than \(most) word pieces takes more than \(limits.maxWindows) windows of 254 under long_text: windows; limits.max_windows is \(limits.maxWindows): shorten it, or use head or tail"
            )
        }
        return windowed(pieces)
    }

    /// Every window of `pieces`, overlapping by half.
    private func windowed(_ pieces: [Int32]) -> TokenizedText {
        let window = Self.maxTokens - 2
        return TokenizedText(
            windows: Self.windowStarts(count: pieces.count, window: window).map { begin in
                wrap(Array(pieces[begin..<min(begin + window, pieces.count)]))
            })
    }

    /// Model positions one pass takes at most. A pass holds about 15 KB of activations per
    /// position, so 2,048 keep it near 31 MB whatever a request asks for, and a pass this long
    /// already reads each weight once for many rows.
    static let passPositions = 2048

    /// The embeddings of tokenized texts, in passes of at most ``passPositions`` positions; a
    /// text of several windows gets the mean of its windows' embeddings, renormalised.
    public func embed(tokenized texts: [TokenizedText]) -> [[Float]] {
        let sequences = texts.flatMap(\.windows)
        var embeddings: [[Float]] = []
        embeddings.reserveCapacity(sequences.count)
        var start = 0
        while start < sequences.count {
            var end = start
            var positions = 0
            while end < sequences.count, end == start || positions + sequences[end].count <= Self.passPositions {
                positions += sequences[end].count
                end += 1
            }
            embeddings += model.embed(Array(sequences[start..<end]))
            start = end
        }
        var next = 0
        return texts.map { text in
            let range = next..<(next + text.windows.count)
            next = range.upperBound
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

private func format(_ value: some BinaryFloatingPoint, digits: Int = 4) -> String {
    String(format: "%.\(digits)f", Double(value))
}
