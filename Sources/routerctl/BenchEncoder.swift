import ArgumentParser
import Foundation
import RouterBenchmarks
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
        let pieces = encoder.tokenizer.wordPieces(EncoderTiming.prose)
        let text64 = EncoderTiming.text(withPieces: 62, encoder: encoder)
        let tokenizerMicros = EncoderTiming.median(seconds: 0.5) { _ = encoder.tokenizer.wordPieces(text64) } * 1e6
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
                    let (perCall, fastest) = EncoderTiming.timings(seconds: seconds) { _ = try? encoder.embed(tokenSequences: sequences) }
                    let flops = Double(batch) * EncoderTiming.flops(tokens: count)
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

    static func list(_ text: String) -> [Int] {
        text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 > 0 }
    }

    func residentMiB() -> Double { Double(residentKiB() ?? 0) / 1024 }
}
