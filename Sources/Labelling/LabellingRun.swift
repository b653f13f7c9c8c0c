import Foundation
import OpenAIChat
import RouterConfig
import RouterJSON
import Synchronization
import TrainingRows

/// The RouteLLM paper's recipe for making training data: each model answers each prompt; a judge
/// compares two answers in both orders (pairwise) or grades each against the prompt's reference
/// (reference). The rows are the training formats (`routerctl label`).
public struct LabellingRun: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        case pairwise, reference
    }

    public var mode: Mode
    public var answerers: [LabelTarget]
    public var judge: LabelTarget?
    /// Prompts labelled at once.
    public var concurrency = 4
    /// Stop before the spend in USD would exceed this.
    public var maxCost: Double?

    public init(mode: Mode, answerers: [LabelTarget], judge: LabelTarget?) {
        self.mode = mode
        self.answerers = answerers
        self.judge = judge
    }

    /// Endpoints by model name: `overrides` (name → base URL and remote model) first, then the
    /// endpoints of `catalogue` (read from `source`). `apiKey` reads an endpoint's key variable.
    public static func targets(
        for names: [String], catalogue: ModelCatalogue, source: String, overrides: [(name: String, baseURL: String, remoteModel: String)],
        maxTokens: Int,
        apiKey: (String) -> String?
    ) throws(LabelError) -> [String: LabelTarget] {
        var targets: [String: LabelTarget] = [:]
        for name in Set(names) {
            guard let model = catalogue.model(named: name), let endpoint = model.endpoint else { continue }
            targets[name] = LabelTarget(
                name: name,
                endpoint: ChatEndpoint(
                    baseURL: endpoint.baseURL, model: endpoint.model, apiKey: endpoint.apiKeyEnvironment.flatMap(apiKey),
                    maxTokens: endpoint.maxTokens ?? maxTokens),
                price: (model.inputPrice, model.outputPrice))
        }
        for entry in overrides {
            let priced = catalogue.model(named: entry.name).map { ($0.inputPrice, $0.outputPrice) }
            targets[entry.name] = LabelTarget(
                name: entry.name, endpoint: ChatEndpoint(baseURL: entry.baseURL, model: entry.remoteModel, maxTokens: maxTokens), price: priced)
        }
        for name in names where targets[name] == nil {
            throw LabelError(
                "model '\(name)' has no endpoint: give it an endpoint in the models: catalogue of \(source), or --endpoint \(name)=BASE_URL")
        }
        return targets
    }

    /// What labelling stopped with.
    public struct Summary: Sendable {
        public var spent: LabelLedger.State
        public var stoppedForBudget: Bool
    }

    /// Labels `pending` (with each one's `estimates`), `concurrency` prompts at once, appending their
    /// rows to `writer`; `progress` is told after each prompt.
    public func run(
        _ pending: [LabelInput], estimates: [Double], client: ChatClient, writer: RowWriter,
        progress: @escaping @Sendable (LabelLedger.State) -> Void
    ) async throws -> Summary {
        let ledger = LabelLedger()
        var stoppedForBudget = false
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            var inFlight = 0
            for (input, estimate) in zip(pending, estimates) {
                if inFlight == concurrency {
                    try await tasks.next()
                    inFlight -= 1
                }
                if let maxCost {
                    let allowed = ledger.state.withLock { state in
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
                    defer { ledger.state.withLock { $0.reserved -= maxCost == nil ? 0 : estimate } }
                    let rows = try await labelOne(input, client: client, ledger: ledger)
                    try writer.append(rows)
                    progress(
                        ledger.state.withLock { state in
                            state.done += 1
                            return state
                        })
                }
            }
            try await tasks.waitForAll()
        }
        return Summary(spent: ledger.state.withLock { $0 }, stoppedForBudget: stoppedForBudget)
    }

    /// What one prompt is expected to cost: every answer, then the judge's calls.
    public func estimate(_ input: LabelInput) -> Double {
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

    private func call(_ turns: [ChatTurn], _ target: LabelTarget, _ client: ChatClient, _ ledger: LabelLedger) async throws -> String {
        let reply: ChatReply
        do {
            reply = try await client.complete(turns, on: target.endpoint)
        } catch {
            throw LabelError("\(target.name): \(error.message)")
        }
        let usd = target.cost(promptTokens: reply.promptTokens, completionTokens: reply.completionTokens)
        ledger.state.withLock { state in
            state.calls += 1
            state.tokens += reply.promptTokens + reply.completionTokens
            state.usd += usd
        }
        return reply.text
    }

    /// Answers, judges and returns the prompt's rows: one battles row per pair of models, or one quality row.
    private func labelOne(_ input: LabelInput, client: ChatClient, ledger: LabelLedger) async throws -> [[UInt8]] {
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
                    if verdicts.0 == nil || verdicts.1 == nil { ledger.state.withLock { $0.unparsed += 1 } }
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
                        ledger.state.withLock { $0.unparsed += 1 }
                    }
                }
            }
            if let judge, ReferenceGrader.number(reference) == nil { row["judge"] = .string(judge.name) }
            return [QualityRow(prompt: .text(input.prompt), quality: quality, extra: row).line()]
        }
    }
}

/// A model to call, and its price when the catalogue has one.
public struct LabelTarget: Sendable {
    public var name: String
    public var endpoint: ChatEndpoint
    public var price: (input: Double, output: Double)?

    public init(name: String, endpoint: ChatEndpoint, price: (input: Double, output: Double)?) {
        self.name = name
        self.endpoint = endpoint
        self.price = price
    }

    public func cost(promptTokens: Int, completionTokens: Int) -> Double {
        guard let price else { return 0 }
        return (Double(promptTokens) * price.input + Double(completionTokens) * price.output) / 1_000_000
    }

    /// A call's cost before it is made: prompt characters / 4, and the longest answer.
    public func estimate(promptCharacters: Int, answerTokens: Int? = nil) -> Double {
        cost(promptTokens: max(1, promptCharacters / 4), completionTokens: answerTokens ?? endpoint.maxTokens)
    }
}

/// What has been spent so far, shared by the prompts in flight.
public final class LabelLedger: Sendable {
    public struct State: Sendable {
        public var done = 0
        public var calls = 0
        public var tokens = 0
        public var usd = 0.0
        /// Estimates of the prompts in flight, held against --max-cost until they finish.
        public var reserved = 0.0
        public var unparsed = 0
    }
    public let state = Mutex(State())

    public init() {}
}

/// Appends rows, one per line, durably: a prompt's rows go out in one write, so a killed run
/// loses at most the prompts in flight.
public final class RowWriter: Sendable {
    private let handle: Mutex<FileHandle>

    public init(path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: folder.isEmpty ? "." : folder, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let file = FileHandle(forWritingAtPath: path) else { throw LabelError("\(path): cannot open for appending") }
        try file.seekToEnd()
        handle = Mutex(file)
    }

    /// `lines` are encoded rows, each with its newline.
    public func append(_ lines: [[UInt8]]) throws {
        let bytes = lines.flatMap { $0 }
        try handle.withLock { file in
            try file.write(contentsOf: Data(bytes))
            try file.synchronize()
        }
    }
}
