import ArgumentParser
import Foundation
import Labelling
import OpenAIChat
import RouterConfig

/// `routerctl label`: the RouteLLM paper's recipe for making training data, as a command. Each
/// model answers each prompt; a judge compares two answers in both orders (pairwise) or grades
/// each against the prompt's reference (reference). The rows are the training formats.
struct Label: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Label prompts with your models and an LLM judge: battles (pairwise) or quality rows (reference) for routerctl train.",
        discussion: """
            Models and the judge are OpenAI-compatible endpoints: from the config's models: catalogue (their endpoint), \
            or --endpoint NAME=BASE_URL[#REMOTE_MODEL]. Costs are priced from the catalogue with each reply's usage. \
            A rerun with the same --output skips prompts already labelled, so a killed run resumes.
            """)

    @Option(help: "JSON lines with 'prompt' (and 'reference' or 'answer' for --mode reference); a decision log with prompts works.")
    var prompts: String
    @Option(name: .customLong("model"), help: "A model to answer (repeatable; two or more for pairwise).") var models: [String]
    @Option(help: "The judge model (needed for pairwise, and for references that are not numbers).") var judge: String?
    @Option(help: "pairwise or reference.") var mode: LabellingRun.Mode = .pairwise
    @Option(name: [.short, .long], help: "Where the rows go (appended; its prompt_hash fields say what is done).") var output: String
    @Option(name: .customLong("config"), help: "The routerd config whose models: catalogue gives endpoints and prices.")
    var config: String = ConfigLoader.defaultPath
    @Option(name: .customLong("endpoint"), help: "NAME=BASE_URL[#REMOTE_MODEL], for a model not in the catalogue (repeatable).")
    var endpoints: [String] = []
    @Option(help: "Prompts labelled at once.") var concurrency: Int = 4
    @Option(name: .customLong("endpoint-concurrency"), help: "Calls in flight per endpoint.") var endpointConcurrency: Int = 4
    @Option(name: .customLong("max-tokens"), help: "The longest answer to ask for, unless the catalogue's endpoint says.") var maxTokens: Int = 512
    @Option(help: "Seconds per call.") var timeout: Double = 120
    @Option(help: "Further tries of a call that timed out or got 429 or 5xx, with backoff.") var retries: Int = 3
    @Option(name: .customLong("max-cost"), help: "Stop before the spend in USD would exceed this.") var maxCost: Double?
    @Flag(name: .customLong("dry-run"), help: "Estimate the cost of what is left to do, and call nothing.") var dryRun = false
    @Option(help: "Label at most this many of the prompts.") var limit: Int?

    func validate() throws {
        guard Set(models).count == models.count, !models.isEmpty else { throw ValidationError("name each --model once") }
        if mode == .pairwise {
            guard models.count >= 2 else { throw ValidationError("pairwise needs two or more --model") }
            guard judge != nil else { throw ValidationError("pairwise needs --judge") }
        }
        guard concurrency > 0, endpointConcurrency > 0, maxTokens > 0, timeout > 0, retries >= 0 else {
            throw ValidationError("--concurrency, --endpoint-concurrency, --max-tokens and --timeout must be positive")
        }
    }

    func run() async throws {
        do {
            try await label()
        } catch let error as LabelError {
            printError("routerctl label: \(error)")
            throw ExitCode(1)
        } catch let error as ConfigError {
            printError("routerctl label: \(error)")
            throw ExitCode(1)
        }
    }

    private func label() async throws {
        let catalogue = FileManager.default.fileExists(atPath: config) ? try ConfigLoader.catalogue(inConfig: config) : ModelCatalogue()
        let overrides = try endpoints.map { entry in
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw LabelError("--endpoint takes NAME=BASE_URL[#REMOTE_MODEL], found '\(entry)'") }
            let location = parts[1].split(separator: "#", maxSplits: 1).map(String.init)
            return (name: parts[0], baseURL: location[0], remoteModel: location.count == 2 ? location[1] : parts[0])
        }
        let targets = try LabellingRun.targets(
            for: models + [judge].compactMap { $0 }, catalogue: catalogue, source: config, overrides: overrides, maxTokens: maxTokens
        ) { ProcessInfo.processInfo.environment[$0] }
        let judgeTarget = try judge.map { name in
            guard let target = targets[name] else { throw LabelError("unknown --judge '\(name)'") }
            return target
        }
        let answerers = try models.map { name in
            guard let target = targets[name] else { throw LabelError("unknown --model '\(name)'") }
            return target
        }
        var inputs = try LabelInputReader.read(prompts)
        if let limit { inputs = Array(inputs.prefix(limit)) }
        if mode == .reference {
            if let missing = inputs.first(where: { $0.reference == nil }) {
                throw LabelError(
                    "\(prompts): --mode reference needs a 'reference' (or 'answer') on every line; '\(excerpt(missing.prompt))' has none")
            }
            if judgeTarget == nil, let words = inputs.first(where: { ReferenceGrader.number($0.reference!) == nil }) {
                throw LabelError("the reference of '\(excerpt(words.prompt))' is not a number: grading it needs --judge")
            }
        }
        var run = LabellingRun(mode: mode, answerers: answerers, judge: judgeTarget)
        run.concurrency = concurrency
        run.maxCost = maxCost
        let done = try LabelInputReader.done(in: output)
        let pending = inputs.filter { !done.contains($0.hash) }
        let estimates = pending.map { run.estimate($0) }
        let unpriced = (answerers + [judgeTarget].compactMap { $0 }).filter { $0.price == nil }.map(\.name)
        printError(
            "routerctl label: \(inputs.count) prompts, \(inputs.count - pending.count) already in \(output), \(pending.count) to do; "
                + String(format: "estimated cost $%.4f", estimates.reduce(0, +))
                + (unpriced.isEmpty ? "" : " (no price for \(unpriced.joined(separator: ", ")): counted as 0)"))
        if dryRun { return }

        let client = ChatClient(concurrency: endpointConcurrency, timeout: timeout, retries: retries)
        let total = pending.count
        let summary = try await run.run(pending, estimates: estimates, client: client, writer: try RowWriter(path: output)) { state in
            Self.progress(state, total: total)
        }
        Self.progress(summary.spent, total: total)
        FileHandle.standardError.write(Data("\n".utf8))
        let state = summary.spent
        printError(
            String(format: "routerctl label: labelled %d prompts with %d calls, %d tokens, $%.4f", state.done, state.calls, state.tokens, state.usd)
                + (state.unparsed > 0 ? "; \(state.unparsed) judge replies without a verdict counted as ties or left out" : ""))
        if summary.stoppedForBudget {
            printError(String(format: "routerctl label: stopped before exceeding --max-cost $%.4f; run again with a higher one to go on", maxCost!))
        }
    }

    private static func progress(_ state: LabelLedger.State, total: Int) {
        let width = 30
        let filled = total == 0 ? width : width * state.done / total
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        FileHandle.standardError.write(
            Data(String(format: "\r[%@] %d/%d prompts · %d calls · $%.4f", bar, state.done, total, state.calls, state.usd).utf8))
    }
}

extension LabellingRun.Mode: ExpressibleByArgument {}
