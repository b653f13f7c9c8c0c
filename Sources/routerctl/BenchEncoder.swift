import ArgumentParser
import Foundation
import RouterVocabulary
import TextEncoder

/// Measures the local sentence encoder in this process: latency, throughput
/// and achieved GFLOP/s at several prompt lengths, batch sizes and thread counts.
struct BenchEncoder: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-encoder", abstract: "Benchmark the all-MiniLM-L6-v2 encoder: latency, sentences/s, GFLOP/s, tokenizer time, RSS.")

    @Option(help: "The model folder.") var model: String = "models/all-MiniLM-L6-v2"
    @Option(help: "Token counts to measure ([CLS] and [SEP] included), comma-separated.") var tokens: String = "16,32,64,128,256"
    @Option(help: "Batch sizes, comma-separated.") var batches: String = "1,32"
    @Option(help: "OpenBLAS thread counts, comma-separated.") var threads: String = "1,2"
    @Option(help: "Seconds to spend on each cell (at least 3 calls).") var seconds: Double = 1.5
    @Option(help: "The library running the linear layers.") var kernel: LinearKernel = .onednn
    @Option(help: "The linear layers' precision: fp32, int8, bf16 or auto (all but fp32 pass the accuracy gate at load).")
    var precision: PrecisionSetting = .fixed(.fp32)

    func run() throws {
        BLASKernels.reexecWithBestCoreIfNeeded()
        let rssBefore = residentMiB()
        let start = DispatchTime.now().uptimeNanoseconds
        let encoder: SentenceEncoder
        do {
            encoder = try SentenceEncoder.load(modelDirectory: model, kernel: kernel, precision: precision)
        } catch {
            printError("routerctl: \(error)")
            throw ExitCode(1)
        }
        let loadMs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        print(String(format: "model loaded in %.0f ms; RSS %.0f MiB after loading (%.0f MiB before)", loadMs, residentMiB(), rssBefore))
        print(
            "linear layers: \(encoder.kernel.rawValue) (\(encoder.kernelImplementation)) \(encoder.precision.rawValue), "
                + String(format: "%.1f MiB", Double(encoder.linearWeightBytes) / 1_048_576)
                + "; OpenBLAS core: \(BLASKernels.coreName); oneDNN ISA: \(EncoderPrecision.cpuInstructionSet)")
        if !encoder.precisionNote.isEmpty { print("precision: \(encoder.precisionNote)") }

        // Tokenizer: a 64-token text of ordinary prose.
        let pieces = encoder.tokenizer.wordPieces(Self.prose)
        let text64 = Self.text(withPieces: 62, encoder: encoder)
        let tokenizerMicros = Self.median(seconds: 0.5) { _ = encoder.tokenizer.wordPieces(text64) } * 1e6
        print(String(format: "tokenizer: %.1f µs for a 64-token text (median)", tokenizerMicros))
        print()

        let tokenCounts = Self.list(tokens)
        let batchSizes = Self.list(batches)
        let threadCounts = Self.list(threads)
        print("MS/CALL is the median call; MIN MS the fastest (this machine's neighbours add noise); the rest follow the median.")
        print(
            table(
                header: ["TOKENS", "BATCH", "THREADS", "MS/CALL", "MIN MS", "MS/SENTENCE", "SENTENCES/S", "GFLOP/S"], rows: [], widths: Self.widths))
        for count in tokenCounts {
            let ids = [encoder.tokenizer.classifierID] + Array(pieces.prefix(count - 2)) + [encoder.tokenizer.separatorID]
            for batch in batchSizes {
                let sequences = [[Int32]](repeating: ids, count: batch)
                for threadCount in threadCounts {
                    SentenceEncoder.setThreads(threadCount, kernel: kernel)
                    _ = try encoder.embed(tokenSequences: sequences)  // warm up
                    let (perCall, fastest) = Self.timings(seconds: seconds) { _ = try? encoder.embed(tokenSequences: sequences) }
                    let flops = Double(batch) * Self.flops(tokens: count)
                    print(
                        table(
                            header: [
                                "\(count)", "\(batch)", "\(threadCount)", String(format: "%.2f", perCall * 1e3),
                                String(format: "%.2f", fastest * 1e3),
                                String(format: "%.3f", perCall * 1e3 / Double(batch)), String(format: "%.0f", Double(batch) / perCall),
                                String(format: "%.1f", flops / perCall / 1e9),
                            ], rows: [], widths: Self.widths))
                }
            }
        }
        SentenceEncoder.setThreads(1)
    }

    static let widths = [6, 5, 7, 8, 7, 11, 11, 7]

    /// FLOPs of one forward pass: the dense layers per token plus attention.
    static func flops(tokens: Int) -> Double {
        let h = 384.0
        let perTokenPerLayer = 2 * (4 * h * h + 2 * h * 1536)
        let attentionPerLayer = 4 * Double(tokens * tokens) * h
        return 6 * (Double(tokens) * perTokenPerLayer + attentionPerLayer)
    }

    /// The median wall time of `body` over repeated calls for about `seconds`.
    static func median(seconds: Double, _ body: () -> Void) -> Double { timings(seconds: seconds, body).median }

    /// The median and the fastest wall time of `body` over repeated calls for about `seconds`.
    static func timings(seconds: Double, _ body: () -> Void) -> (median: Double, fastest: Double) {
        var times: [Double] = []
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while times.count < 3 || (DispatchTime.now().uptimeNanoseconds < deadline && times.count < 100_000) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        times.sort()
        return (times[times.count / 2], times[0])
    }

    static func list(_ text: String) -> [Int] {
        text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 > 0 }
    }

    /// A prefix of the prose with exactly `count` word pieces.
    static func text(withPieces count: Int, encoder: SentenceEncoder) -> String {
        let words = prose.split(separator: " ")
        var low = 1
        var high = words.count
        while low < high {
            let middle = (low + high) / 2
            if encoder.tokenizer.wordPieces(words.prefix(middle).joined(separator: " ")).count < count { low = middle + 1 } else { high = middle }
        }
        return words.prefix(low).joined(separator: " ")
    }

    func residentMiB() -> Double { Double(residentKiB() ?? 0) / 1024 }

    /// Ordinary English prose, long enough for 256 tokens.
    static let prose = """
        The history of the printing press begins in the middle of the fifteenth century, when Johannes Gutenberg, a goldsmith \
        from Mainz, combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books \
        far faster than any scribe. Before his invention, most books in Europe were copied by hand, a slow and expensive process \
        that kept written knowledge in the hands of monasteries, universities and wealthy patrons. Within a few decades presses \
        had spread to more than two hundred cities, and millions of volumes were in circulation. Scholars could compare identical \
        copies of a text, errors could be corrected in later editions, and new ideas travelled across borders in weeks rather \
        than years. Historians still debate how much the press caused the Reformation, the scientific revolution and the rise \
        of literacy, but few doubt that it changed how people learned, argued and governed themselves. Newspapers, pamphlets and \
        scientific journals followed, each creating new audiences and new kinds of public conversation. Today, when we ask a \
        language model to summarise an article or answer a question, we rely on the same basic promise that Gutenberg made: \
        that information, once written down, can be copied cheaply, shared widely and read by anyone who wants to understand it. \
        The economics of that promise have shifted many times, from paper and ink to radio waves, fibre optic cables and \
        data centres, yet the underlying desire to reach more readers at lower cost has remained remarkably stable.
        """
}
