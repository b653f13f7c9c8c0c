import ArgumentParser
import Foundation
import MatrixFactorization
import RouterConfig
import RouterEvaluation
import RouterPluginKit
import RouterTraining
import RouterVocabulary
import SafeTensors
import SimilarityRanking
import StableHash
import TextEncoder
import TrainingRows

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train router weights from battles files.",
        subcommands: [TrainMF.self, TrainSWRanking.self, TrainClassifier.self, TrainQuality.self])
}

/// The training data every trainer reads: battles or quality files, model aliases, and
/// the encoder (through the on-disk embedding cache) that embeds their prompts.
struct TrainingData: ParsableArguments {
    @Argument(help: "Battles files (JSON lines {prompt, model_a, model_b, winner}) or per-prompt quality files ({prompt, quality: {model: value}}).")
    var arguments: [String] = []
    @OptionGroup var feedback: FeedbackSource
    @Option(name: .customLong("pairs-per-prompt"), help: "Battles drawn per prompt from a quality file.") var pairsPerPrompt: Int = 20
    @Option(help: "Rename a model, FROM=TO (repeatable), to unify names across files.") var alias: [String] = []
    @Option(help: "The encoder model folder.") var model: String = "models/all-MiniLM-L6-v2"
    @Option(name: .customLong("long-text"), help: "head, tail or windows: how prompts over 256 tokens are embedded.") var longText: String = "head"
    @Option(help: "The on-disk embedding cache (default: .cache/embeddings-minilm-<long-text>.bin).") var cache: String?
    @Option(
        name: .customLong("soft-labels"),
        help: "For quality files: label each pair σ((value_a − value_b) / SCALE) instead of who won (mf only).")
    var softLabels: Float?

    /// The files to read: the arguments, and with --from-feedback the feedback store's non-empty files.
    var files: [String] {
        get throws { try feedback.files(adding: arguments) }
    }

    var policy: LongTextPolicy {
        get throws {
            guard let policy = LongTextPolicy(rawValue: longText) else { throw ValidationError("--long-text must be head, tail or windows") }
            return policy
        }
    }

    /// Reads every file; refuses models in fewer than `minBattles` battles.
    func load(seed: UInt64, minBattles: Int) throws -> TrainingSet {
        var aliases: [String: String] = [:]
        for entry in alias {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--alias takes FROM=TO, found '\(entry)'") }
            aliases[parts[0]] = parts[1]
        }
        let files = try self.files
        let loaded = try TrainingSet.load(
            files: files, aliases: aliases, pairsPerPrompt: pairsPerPrompt, seed: seed, softScale: softLabels, minBattles: minBattles)
        print("\(loaded.battles.count) battles, \(loaded.prompts.count) distinct prompts, \(loaded.models.count) models, from \(files.count) file(s)")
        return loaded
    }

    /// Embeds prompts through the on-disk cache; only new prompts run the encoder.
    func embed(_ prompts: [String]) throws -> [[Float]] {
        let policy = try self.policy
        return try CachedEmbeddings.embed(prompts, cache: cache ?? CachedEmbeddings.defaultPath(policy), policy: policy, progress: Progress.embedding)
        {
            try SentenceEncoder(modelDirectory: model)
        }
    }

    /// Prints the APGR of each `--validate-with` entry on its prompts that are not in `trained`;
    /// `score(pair, embeddings)` scores them for the entry's strong/weak pair.
    func reportHeldOut(
        _ entries: [String], defaultPair: [String], trained: Set<String>, score: (_ pair: [String], _ embeddings: [[Float]]) throws -> [Double]
    ) throws {
        try Self.reportHeldOut(entries, defaultPair: defaultPair, trained: trained, embed: embed) { pair, _, embeddings in
            try score(pair, embeddings)
        }
    }

    /// As above, with the embedding step given (`train quality` embeds through its own options).
    static func reportHeldOut(
        _ entries: [String], defaultPair: [String], trained: Set<String>, embed: ([String]) throws -> [[Float]],
        score: (_ pair: [String], _ prompts: [String], _ embeddings: [[Float]]) throws -> [Double]
    ) throws {
        for entry in entries {
            let (file, pair, benchmark) = try validationBenchmark(entry, defaultPair: defaultPair)
            let kept = benchmark.prompts.indices.filter { !trained.contains(benchmark.prompts[$0]) }
            guard kept.count >= 10 else {
                print("held-out APGR on \(file): only \(kept.count) prompts were not trained on; skipped")
                continue
            }
            let prompts = kept.map { benchmark.prompts[$0] }
            let scores = try score(pair, prompts, try embed(prompts))
            let curve = RoutingCurve(scores: scores, strong: kept.map { benchmark.strong[$0] }, weak: kept.map { benchmark.weak[$0] })
            printHeldOut(curve, file: file, prompts: kept.count, pair: pair)
        }
    }

    /// A held-out benchmark for `--validate-with FILE[@STRONG,WEAK]`.
    static func validationBenchmark(_ entry: String, defaultPair: [String]) throws -> (file: String, pair: [String], benchmark: Benchmark) {
        let parts = entry.split(separator: "@", maxSplits: 1).map(String.init)
        let pair = parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : defaultPair
        guard pair.count == 2 else { throw ValidationError("--validate-with \(entry): write FILE or FILE@STRONG,WEAK") }
        do {
            return (parts[0], pair, try BenchmarkLoader.generic(file: parts[0], strong: pair[0], weak: pair[1]))
        } catch {
            throw TrainingDataError("\(error)")
        }
    }
}

/// `--from-feedback`: the feedback store's files (docs/TRAINING.md) as training data.
struct FeedbackSource: ParsableArguments {
    @Flag(
        name: .customLong("from-feedback"),
        help: "Also train on the feedback store: battles.jsonl and quality.jsonl in feedback.directory of --config.")
    var fromFeedback = false
    @Option(name: .customLong("config"), help: "The routerd config whose feedback.directory --from-feedback reads.")
    var config: String = ConfigLoader.defaultPath

    /// `files`, and with --from-feedback the feedback store's non-empty files; at least one.
    func files(adding files: [String]) throws -> [String] {
        var all = files
        if fromFeedback {
            guard let folder = ConfigLoader.feedbackDirectory(inConfig: config) else {
                throw ValidationError("--from-feedback: \(config) has no feedback.directory (or cannot be read)")
            }
            let found = ["battles.jsonl", "quality.jsonl"].map { folder + "/" + $0 }.filter {
                ((try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int) ?? 0) > 0
            }
            guard !found.isEmpty else { throw ValidationError("--from-feedback: no feedback recorded yet in \(folder)") }
            all += found
        }
        guard !all.isEmpty else { throw ValidationError("give battles or quality files, or --from-feedback") }
        return all
    }
}

/// Runs a trainer, turning data, encoder and file errors into one message and exit code 1.
func runTrainer(_ command: String, _ body: () throws -> Void) throws {
    BLASKernels.reexecWithBestCoreIfNeeded()
    do {
        try body()
    } catch let error as TrainingDataError {
        printError("routerctl train \(command): \(error)")
        throw ExitCode(1)
    } catch let error as EncoderError {
        printError("routerctl train \(command): \(error)")
        throw ExitCode(1)
    } catch let error as SafeTensorsError {
        printError("routerctl train \(command): \(error)")
        throw ExitCode(1)
    } catch let error as RankingIndexError {
        printError("routerctl train \(command): \(error)")
        throw ExitCode(1)
    }
}

func jsonString(_ value: Any) throws -> String {
    String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]), as: UTF8.self)
}

func createParentDirectory(of path: String) throws {
    let folder = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: folder.isEmpty ? "." : folder, withIntermediateDirectories: true)
}

/// `routerctl train mf`: RouteLLM's matrix factorisation, trained on the local encoder's embeddings.
struct TrainMF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mf", abstract: "Train the matrix-factorisation router from battles files (docs/TRAINING.md).")

    @OptionGroup var data: TrainingData
    @Option(
        name: .customLong("validate-with"),
        help: "After training, report APGR on the prompts of this quality file that were not trained on; FILE or FILE@STRONG,WEAK (repeatable).")
    var validateWith: [String] = []
    @Option(name: [.short, .long], help: "Where to write the weights (safetensors).") var output: String = "weights/mf-minilm.safetensors"
    @Option(help: "Latent dimension d.") var dimension: Int = 128
    @Option(help: "Most epochs.") var epochs: Int = 100
    @Option(name: .customLong("batch-size")) var batchSize: Int = 64
    @Option(name: .customLong("learning-rate")) var learningRate: Float = 3e-4
    @Option(name: .customLong("weight-decay")) var weightDecay: Float = 1e-5
    @Option(help: "Standard deviation of the noise added to embeddings while training.") var noise: Float = 0.01
    @Option(help: "drop or half: what a tie counts as.") var ties: String = "drop"
    @Option(help: "Share of prompts held out for validation.") var validation: Double = 0.1
    @Option(help: "Epochs without improvement before stopping.") var patience: Int = 5
    @Option(help: "Random seed.") var seed: UInt64 = 42
    @Option(name: .customLong("min-battles"), help: "Refuse models in fewer battles than this.") var minBattles: Int = 2
    @Option(help: "Strong model for the stored score quantiles.") var strong: String = "gpt-4-1106-preview"
    @Option(help: "Weak model for the stored score quantiles.") var weak: String = "mistralai/Mixtral-8x7B-Instruct-v0.1"

    func run() throws {
        try runTrainer("mf", train)
    }

    private func train() throws {
        let policy = try data.policy
        guard let tiePolicy = MFTrainingOptions.Ties(rawValue: ties) else { throw ValidationError("--ties must be drop or half") }
        let loaded = try data.load(seed: seed, minBattles: minBattles)
        let (battles, models, modelIndex, prompts, promptIndex) = (
            loaded.battles, loaded.models, loaded.modelIndex, loaded.prompts, loaded.promptIndex
        )
        let embeddings = try data.embed(prompts)
        var samples: [MFSample] = []
        for battle in battles {
            let label: Float
            switch (battle.softLabel, battle.outcome) {
            case (let soft?, _): label = soft
            case (nil, .modelA): label = 1
            case (nil, .modelB): label = 0
            case (nil, .tie):
                guard tiePolicy == .half else { continue }
                label = 0.5
            }
            samples.append(
                MFSample(prompt: promptIndex[battle.prompt]!, modelA: modelIndex[battle.modelA]!, modelB: modelIndex[battle.modelB]!, label: label))
        }
        let validationPrompts = TrainingSet.validationPrompts(prompts, fraction: validation)
        var options = MFTrainingOptions()
        options.dimension = dimension
        options.epochs = epochs
        options.batchSize = batchSize
        options.learningRate = learningRate
        options.weightDecay = weightDecay
        options.noise = noise
        options.validationFraction = validation
        options.patience = patience
        options.seed = seed
        options.ties = tiePolicy
        SentenceEncoder.setThreads(1)
        let trainer = MFTrainer(models: models, embeddings: embeddings, samples: samples, validationPrompts: validationPrompts, options: options)
        print("training on \(trainer.train.count) samples, validating on \(trainer.validation.count) (\(validationPrompts.count) held-out prompts)")
        let (model, best) = trainer.run { report in
            let bar = Progress.bar(fraction: Double(report.epoch) / Double(epochs), width: 20)
            print(
                String(
                    format: "epoch %3d/%d %@ train loss %.4f · val loss %.4f · val acc %.1f%%%@", report.epoch, epochs, bar, report.trainLoss,
                    report.validationLoss, report.validationAccuracy * 100, report.isBest ? " *" : ""))
        }
        print(String(format: "best epoch %d: val loss %.4f, val acc %.1f%%", best.epoch, best.validationLoss, best.validationAccuracy * 100))

        var metadata: [String: String] = [MetadataKey.encoder: "all-MiniLM-L6-v2", MetadataKey.longText: policy.rawValue]
        let summary: [String: Any] = [
            "files": try data.files.map { ($0 as NSString).lastPathComponent }, "battles": battles.count, "prompts": prompts.count,
            "samples": samples.count,
            "ties": ties, "dimension": dimension, "noise": Double(noise), "learning_rate": Double(learningRate), "weight_decay": Double(weightDecay),
            "best_epoch": best.epoch, "validation_loss": best.validationLoss, "validation_accuracy": best.validationAccuracy, "seed": seed,
        ]
        metadata[MetadataKey.training] = try jsonString(summary)
        if let strongIndex = modelIndex[strong], let weakIndex = modelIndex[weak] {
            // Quantiles of P(strong wins) over the training prompts: `routerctl calibrate` turns a strong share into a threshold with them.
            let quantiles = CalibrationMetadata.percentiles(model.winProbabilities(embeddings, a: strongIndex, b: weakIndex))
            metadata[MetadataKey.scoreQuantiles] = try jsonString(quantiles)
            metadata[MetadataKey.quantilePair] = String(decoding: try JSONEncoder().encode([strong, weak]), as: UTF8.self)
        }
        try createParentDirectory(of: output)
        try model.write(to: output, metadata: metadata)
        print("wrote \(output)")

        // Routing quality on prompts the model never trained on, as RouteLLM measures it.
        let trained = Set(prompts.indices.filter { !validationPrompts.contains($0) }.map { prompts[$0] })
        try data.reportHeldOut(validateWith, defaultPair: [strong, weak], trained: trained) { pair, embeddings in
            guard let a = modelIndex[pair[0]], let b = modelIndex[pair[1]] else {
                throw ValidationError("--validate-with: \(pair.joined(separator: ", ")) must both be among the trained models")
            }
            return model.winProbabilities(embeddings, a: a, b: b)
        }
    }
}

func printHeldOut(_ curve: RoutingCurve, file: String, prompts: Int, pair: [String]) {
    print(
        String(
            format: "held-out APGR on %@ (%d prompts, %@ vs %@): %.3f, CPT(50%%) %@", (file as NSString).lastPathComponent, prompts,
            pair[0], pair[1], curve.apgr, curve.callPerformanceThreshold(0.5).map { String(format: "%.1f%%", $0) } ?? "-"))
}

/// Progress display: a bar rewritten in place on a terminal, plain lines otherwise.
enum Progress {
    static let isTerminal = isatty(STDOUT_FILENO) != 0

    static func bar(fraction: Double, width: Int) -> String {
        let filled = Int((min(max(fraction, 0), 1) * Double(width)).rounded())
        return "▕" + String(repeating: "█", count: filled) + String(repeating: " ", count: width - filled) + "▏"
    }

    static func line(_ text: String) {
        if isTerminal {
            FileHandle.standardOutput.write(Data(("\r" + text).utf8))
        } else {
            print(text)
        }
    }

    static func finish() {
        if isTerminal { print() }
    }

    /// Progress of ``CachedEmbeddings/embed``, as a bar; finished when the last prompt is done.
    static func embedding(done: Int, total: Int, seconds: Double) {
        line(String(format: "  %@ %d/%d prompts, %.0f s", bar(fraction: Double(done) / Double(total), width: 20), done, total, seconds))
        if done == total { finish() }
    }
}
