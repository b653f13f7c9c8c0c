import ArgumentParser
import Foundation
import RouterConfig
import RouterEvaluation
import RouterTraining
import RouterVocabulary
import SafeTensors
import SimilarityRanking
import TextEncoder

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

    /// The inputs as the trainers take them.
    var inputs: TrainingInputs {
        get throws {
            var inputs = TrainingInputs(files: try files)
            inputs.aliases = try aliases(alias)
            inputs.pairsPerPrompt = pairsPerPrompt
            inputs.encoderModel = model
            inputs.policy = try policy
            inputs.cache = cache
            inputs.softLabels = softLabels
            inputs.progress = Progress.embedding
            return inputs
        }
    }
}

/// `--alias FROM=TO` entries as a map.
func aliases(_ entries: [String]) throws -> [String: String] {
    var aliases: [String: String] = [:]
    for entry in entries {
        let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw ValidationError("--alias takes FROM=TO, found '\(entry)'") }
        aliases[parts[0]] = parts[1]
    }
    return aliases
}

/// `--validate-with FILE[@STRONG,WEAK]` entries.
func heldOutValidations(_ entries: [String], defaultPair: [String]) throws -> [HeldOutValidation] {
    try entries.map { entry in
        let parts = entry.split(separator: "@", maxSplits: 1).map(String.init)
        let pair = parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : defaultPair
        guard pair.count == 2 else { throw ValidationError("--validate-with \(entry): write FILE or FILE@STRONG,WEAK") }
        return HeldOutValidation(file: parts[0], pair: pair)
    }
}

/// Prints the held-out APGR of each `--validate-with` file; `score(pair, prompts, embeddings)` is
/// nil when the pair was not trained.
func reportHeldOut(
    _ validations: [HeldOutValidation], trained: Set<String>, embed: ([String]) throws -> [[Float]],
    score: (_ pair: [String], _ prompts: [String], _ embeddings: [[Float]]) throws -> [Double]?
) throws {
    for validation in validations {
        let result: HeldOutValidation.Result?
        do {
            result = try validation.evaluate(trained: trained, embed: embed) { prompts, embeddings in
                guard let scores = try score(validation.pair, prompts, embeddings) else {
                    throw ValidationError("--validate-with: \(validation.pair.joined(separator: ", ")) must both be among the trained models")
                }
                return scores
            }
        } catch let error as BenchmarkError {
            throw TrainingDataError("\(error)")
        }
        guard let result else {
            print("held-out APGR on \(validation.file): fewer than 10 prompts were not trained on; skipped")
            continue
        }
        printHeldOut(result.curve, file: validation.file, prompts: result.prompts, pair: validation.pair)
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
        var job = MFTrainingJob(output: output, strong: strong, weak: weak)
        guard let tiePolicy = MFTrainingOptions.Ties(rawValue: ties) else { throw ValidationError("--ties must be drop or half") }
        job.options.dimension = dimension
        job.options.epochs = epochs
        job.options.batchSize = batchSize
        job.options.learningRate = learningRate
        job.options.weightDecay = weightDecay
        job.options.noise = noise
        job.options.validationFraction = validation
        job.options.patience = patience
        job.options.seed = seed
        job.options.ties = tiePolicy
        job.minBattles = minBattles
        let validations = try heldOutValidations(validateWith, defaultPair: [strong, weak])
        let inputs = try data.inputs
        let outcome = try job.run(inputs, log: { print($0) }, epoch: printEpoch(of: epochs))
        let best = outcome.best
        print(String(format: "best epoch %d: val loss %.4f, val acc %.1f%%", best.epoch, best.validationLoss, best.validationAccuracy * 100))
        try reportHeldOut(validations, trained: outcome.trainedPrompts, embed: inputs.embed) { pair, _, embeddings in
            outcome.scores(pair: pair, embeddings: embeddings)
        }
    }
}

/// Prints an epoch's losses with a bar of `epochs`.
func printEpoch(of epochs: Int) -> (EpochReport) -> Void {
    { report in
        let bar = Progress.bar(fraction: Double(report.epoch) / Double(epochs), width: 20)
        print(
            String(
                format: "epoch %3d/%d %@ train loss %.4f · val loss %.4f · val acc %.1f%%%@", report.epoch, epochs, bar, report.trainLoss,
                report.validationLoss, report.validationAccuracy * 100, report.isBest ? " *" : ""))
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
