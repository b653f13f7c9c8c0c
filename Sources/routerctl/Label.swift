import ArgumentParser
import Foundation
import Labelling
import NIOConcurrencyHelpers
import OpenAIChat
import RouterConfig
import RouterJSON
import TrainingRows

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

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case pairwise, reference
    }

    @Option(help: "JSON lines with 'prompt' (and 'reference' or 'answer' for --mode reference); a decision log with prompts works.")
    var prompts: String
    @Option(name: .customLong("model"), help: "A model to answer (repeatable; two or more for pairwise).") var models: [String]
    @Option(help: "The judge model (needed for pairwise, and for references that are not numbers).") var judge: String?
    @Option(help: "pairwise or reference.") var mode: Mode = .pairwise
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

    /// A model to call, and its price when the catalogue has one.
    struct Target: Sendable {
        var name: String
        var endpoint: ChatEndpoint
        var price: (input: Double, output: Double)?

        func cost(promptTokens: Int, completionTokens: Int) -> Double {
            guard let price else { return 0 }
            return (Double(promptTokens) * price.input + Double(completionTokens) * price.output) / 1_000_000
        }

        /// A call's cost before it is made: prompt characters / 4, and the longest answer.
        func estimate(promptCharacters: Int, answerTokens: Int? = nil) -> Double {
            cost(promptTokens: max(1, promptCharacters / 4), completionTokens: answerTokens ?? endpoint.maxTokens)
        }
    }

    /// What has been spent so far, shared by the prompts in flight.
    final class Ledger: Sendable {
        struct State {
            var done = 0
            var calls = 0
            var tokens = 0
            var usd = 0.0
            /// Estimates of the prompts in flight, held against --max-cost until they finish.
            var reserved = 0.0
            var unparsed = 0
        }
        let state = NIOLockedValueBox(State())
    }

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
        let targets = try resolveTargets()
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
        let done = try LabelInputReader.done(in: output)
        let pending = inputs.filter { !done.contains($0.hash) }
        let estimates = pending.map { estimate($0, answerers: answerers, judge: judgeTarget) }
        let unpriced = (answerers + [judgeTarget].compactMap { $0 }).filter { $0.price == nil }.map(\.name)
        printError(
            "routerctl label: \(inputs.count) prompts, \(inputs.count - pending.count) already in \(output), \(pending.count) to do; "
                + String(format: "estimated cost $%.4f", estimates.reduce(0, +))
                + (unpriced.isEmpty ? "" : " (no price for \(unpriced.joined(separator: ", ")): counted as 0)"))
        if dryRun { return }

        let client = ChatClient(concurrency: endpointConcurrency, timeout: timeout, retries: retries)
        let ledger = Ledger()
        let writer = try RowWriter(path: output)
        var stoppedForBudget = false
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            var inFlight = 0
            for (input, estimate) in zip(pending, estimates) {
                if inFlight == concurrency {
                    try await tasks.next()
                    inFlight -= 1
                }
                if let maxCost {
                    let allowed = ledger.state.withLockedValue { state in
                        guard state.usd + state.reserved + estimate <= maxCost else { return false }
                        state.reserved += estimate
                        return true
                    }
                    guard allowed else {
                        stoppedForBudget = true
                        break
                    }
                }
                inFlight += 1
                tasks.addTask { [self] in
                    defer { ledger.state.withLockedValue { $0.reserved -= maxCost == nil ? 0 : estimate } }
                    let rows = try await labelOne(input, answerers: answerers, judge: judgeTarget, client: client, ledger: ledger)
                    try writer.append(rows)
                    progress(ledger, total: pending.count, increment: true)
                }
            }
            try await tasks.waitForAll()
        }
        progress(ledger, total: pending.count, increment: false)
        FileHandle.standardError.write(Data("\n".utf8))
        let state = ledger.state.withLockedValue { $0 }
        printError(
            String(format: "routerctl label: labelled %d prompts with %d calls, %d tokens, $%.4f", state.done, state.calls, state.tokens, state.usd)
                + (state.unparsed > 0 ? "; \(state.unparsed) judge replies without a verdict counted as ties or left out" : ""))
        if stoppedForBudget {
            printError(String(format: "routerctl label: stopped before exceeding --max-cost $%.4f; run again with a higher one to go on", maxCost!))
        }
    }

    /// Endpoints by model name: --endpoint flags first, then the catalogue's endpoints.
    private func resolveTargets() throws -> [String: Target] {
        let catalogue = FileManager.default.fileExists(atPath: config) ? try ConfigLoader.catalogue(inConfig: config) : ModelCatalogue()
        var targets: [String: Target] = [:]
        for name in Set(models + [judge].compactMap { $0 }) {
            guard let model = catalogue.model(named: name), let endpoint = model.endpoint else { continue }
            let key = endpoint.apiKeyEnvironment.flatMap { ProcessInfo.processInfo.environment[$0] }
            targets[name] = Target(
                name: name,
                endpoint: ChatEndpoint(baseURL: endpoint.baseURL, model: endpoint.model, apiKey: key, maxTokens: endpoint.maxTokens ?? maxTokens),
                price: (model.inputPrice, model.outputPrice))
        }
        for entry in endpoints {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw LabelError("--endpoint takes NAME=BASE_URL[#REMOTE_MODEL], found '\(entry)'") }
            let location = parts[1].split(separator: "#", maxSplits: 1).map(String.init)
            let priced = catalogue.model(named: parts[0]).map { ($0.inputPrice, $0.outputPrice) }
            targets[parts[0]] = Target(
                name: parts[0],
                endpoint: ChatEndpoint(baseURL: location[0], model: location.count == 2 ? location[1] : parts[0], maxTokens: maxTokens),
                price: priced)
        }
        for name in models + [judge].compactMap({ $0 }) where targets[name] == nil {
            throw LabelError(
                "model '\(name)' has no endpoint: give it an endpoint in the models: catalogue of \(config), or --endpoint \(name)=BASE_URL")
        }
        return targets
    }

    /// What one prompt is expected to cost: every answer, then the judge's calls.
    private func estimate(_ input: LabelInput, answerers: [Target], judge: Target?) -> Double {
        let characters = input.prompt.count
        var usd = answerers.reduce(0) { $0 + $1.estimate(promptCharacters: characters) }
        guard let judge else { return usd }
        let answerCharacters = answerers.map { $0.endpoint.maxTokens * 4 }
        switch mode {
        case .pairwise:
            let pairs = answerers.count * (answerers.count - 1) / 2
            usd += Double(2 * pairs) * judge.estimate(promptCharacters: characters + 2 * (answerCharacters.max() ?? 0) + 800)
        case .reference:
            if ReferenceGrader.number(input.reference ?? "") == nil {
                usd += answerCharacters.reduce(0) { $0 + judge.estimate(promptCharacters: characters + $1 + 600) }
            }
        }
        return usd
    }

    private func call(_ turns: [ChatTurn], _ target: Target, _ client: ChatClient, _ ledger: Ledger) async throws -> String {
        let reply: ChatReply
        do {
            reply = try await client.complete(turns, on: target.endpoint)
        } catch {
            throw LabelError("\(target.name): \(error.message)")
        }
        let usd = target.cost(promptTokens: reply.promptTokens, completionTokens: reply.completionTokens)
        ledger.state.withLockedValue { state in
            state.calls += 1
            state.tokens += reply.promptTokens + reply.completionTokens
            state.usd += usd
        }
        return reply.text
    }

    /// Answers, judges and returns the prompt's rows: one battles row per pair of models, or one quality row.
    private func labelOne(_ input: LabelInput, answerers: [Target], judge: Target?, client: ChatClient, ledger: Ledger) async throws -> [[UInt8]] {
        let answers = try await withThrowingTaskGroup(of: (Int, String).self) { tasks in
            for (index, target) in answerers.enumerated() {
                tasks.addTask { (index, try await call([ChatTurn(role: "user", content: input.prompt)], target, client, ledger)) }
            }
            var answers = [String](repeating: "", count: answerers.count)
            for try await (index, text) in tasks { answers[index] = text }
            return answers
        }
        // Beside the format's own fields: the hash that says the prompt is done, and where the row came from.
        var row: [String: JSONValue] = ["prompt_hash": .string(input.hash), "source": .string("label")]
        switch mode {
        case .pairwise:
            let judge = judge!
            var rows: [[UInt8]] = []
            for first in answerers.indices {
                for second in answerers.indices where second > first {
                    // Both orders, so the judge's taste for a position cancels out.
                    async let forward = call(
                        PairwiseJudge.messages(prompt: input.prompt, answerA: answers[first], answerB: answers[second]), judge, client, ledger)
                    async let swapped = call(
                        PairwiseJudge.messages(prompt: input.prompt, answerA: answers[second], answerB: answers[first]), judge, client, ledger)
                    let verdicts = (PairwiseJudge.verdict(try await forward), PairwiseJudge.verdict(try await swapped))
                    if verdicts.0 == nil || verdicts.1 == nil { ledger.state.withLockedValue { $0.unparsed += 1 } }
                    let winner = PairwiseJudge.combine(verdicts.0, verdicts.1)
                    var extra = row
                    extra["judge"] = .string(judge.name)
                    let battleWinner: BattleWinner = winner == .first ? .modelA : winner == .second ? .modelB : .tie
                    rows.append(
                        BattleRow(
                            prompt: .text(input.prompt), modelA: answerers[first].name, modelB: answerers[second].name, winner: battleWinner,
                            extra: extra
                        ).line())
                }
            }
            return rows
        case .reference:
            let reference = input.reference!
            var quality: [String: Double] = [:]
            for (target, answer) in zip(answerers, answers) {
                if let number = ReferenceGrader.number(reference) {
                    quality[target.name] = ReferenceGrader.exactMatch(answer: answer, reference: number)
                } else if let judge {
                    let reply = try await call(
                        ReferenceGrader.messages(prompt: input.prompt, reference: reference, answer: answer), judge, client, ledger)
                    if let grade = ReferenceGrader.grade(reply) {
                        quality[target.name] = grade
                    } else {
                        ledger.state.withLockedValue { $0.unparsed += 1 }
                    }
                }
            }
            if let judge, ReferenceGrader.number(reference) == nil { row["judge"] = .string(judge.name) }
            return [QualityRow(prompt: .text(input.prompt), quality: quality, extra: row).line()]
        }
    }

    private func progress(_ ledger: Ledger, total: Int, increment: Bool) {
        let state = ledger.state.withLockedValue { state in
            if increment { state.done += 1 }
            return state
        }
        let width = 30
        let filled = total == 0 ? width : width * state.done / total
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        FileHandle.standardError.write(
            Data(String(format: "\r[%@] %d/%d prompts · %d calls · $%.4f", bar, state.done, total, state.calls, state.usd).utf8))
    }
}

/// Appends rows, one per line, durably: a prompt's rows go out in one write, so a killed run
/// loses at most the prompts in flight.
final class RowWriter: Sendable {
    private let handle: NIOLockedValueBox<FileHandle>

    init(path: String) throws {
        try createParentDirectory(of: path)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let file = FileHandle(forWritingAtPath: path) else { throw LabelError("\(path): cannot open for appending") }
        try file.seekToEnd()
        handle = NIOLockedValueBox(file)
    }

    /// `lines` are encoded rows, each with its newline.
    func append(_ lines: [[UInt8]]) throws {
        let bytes = lines.flatMap { $0 }
        try handle.withLockedValue { file in
            try file.write(contentsOf: Data(bytes))
            try file.synchronize()
        }
    }
}
