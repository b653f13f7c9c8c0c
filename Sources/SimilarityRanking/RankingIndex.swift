import CBLAS
import Foundation
import RouterVocabulary
import SafeTensors

/// A problem with a ranking index file, naming the file.
public struct RankingIndexError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The battles `sw_ranking` ranks models with, indexed by prompt.
///
/// Many battles share one prompt (arena-bench-v1 has about 118 per prompt), so
/// the index holds each distinct prompt's embedding once, and per prompt the
/// weighted wins between models: a battle won by `a` adds 1 to (a beats b), a
/// tie adds ½ each way. Scoring then takes one similarity per distinct prompt,
/// not per battle.
///
/// On disk it is a safetensors file: `embeddings` [prompts × dim] (F16 or F32), L2-normalised,
/// and `wins` [n × 4] rows of (prompt, winner, loser, weight) as Float32, sorted
/// by prompt; metadata `format` = `llm-router.sw_ranking/1`, `models` (a JSON
/// list), `encoder` and `embedding_dim`.
public struct RankingIndex: Sendable {
    public static let format = "llm-router.sw_ranking/1"

    /// One entry of a prompt's record: `winner` beat `loser` with this weight (½ for a tie).
    public struct Win: Sendable, Hashable {
        public var prompt: Int
        public var winner: Int
        public var loser: Int
        public var weight: Float

        public init(prompt: Int, winner: Int, loser: Int, weight: Float) {
            self.prompt = prompt
            self.winner = winner
            self.loser = loser
            self.weight = weight
        }
    }

    public let models: [String]
    public let dimension: Int
    public let promptCount: Int
    /// [promptCount × dimension], rows L2-normalised.
    public let embeddings: [Float]
    /// Wins sorted by prompt; prompt p's are `wins[promptStart[p]..<promptStart[p + 1]]`.
    public let wins: [Win]
    public let promptStart: [Int]
    /// What a row stands for when it is an anchor of several learned prompts (``LearnedRanking``)
    /// whose wins were already shared out per prompt, as ``RankingSettings/WeightUnit/prompt``
    /// weighs them: its number of prompts, their battles' summed weight, and the sum of each
    /// prompt's 1 / battle weight (what Kish's effective sample size needs).
    public struct PromptShare: Sendable, Hashable {
        public var prompts: Double
        public var battleWeight: Double
        public var inverseBattleWeight: Double

        /// A row of one prompt whose battles weigh `battleWeight` in all.
        public init(prompt battleWeight: Double) {
            self.init(prompts: 1, battleWeight: battleWeight, inverseBattleWeight: battleWeight > 0 ? 1 / battleWeight : 0)
        }

        public init(prompts: Double, battleWeight: Double, inverseBattleWeight: Double) {
            self.prompts = prompts
            self.battleWeight = battleWeight
            self.inverseBattleWeight = inverseBattleWeight
        }
    }

    /// Per row, when some rows are anchors whose wins are shared per prompt; nil: every row one
    /// prompt, its wins as recorded.
    public let promptShares: [PromptShare]?

    /// Builds an index; wins of the same (prompt, winner, loser) are summed.
    public init(models: [String], embeddings: [[Float]], wins: [Win]) throws(RankingIndexError) {
        guard let dimension = embeddings.first?.count, dimension > 0 else { throw RankingIndexError("an index needs at least one prompt") }
        guard embeddings.allSatisfy({ $0.count == dimension }) else { throw RankingIndexError("embeddings differ in dimension") }
        var merged: [Win: Float] = [:]
        for win in wins {
            guard embeddings.indices.contains(win.prompt), models.indices.contains(win.winner), models.indices.contains(win.loser),
                win.winner != win.loser, win.weight.isFinite, win.weight > 0
            else { throw RankingIndexError("invalid win \(win)") }
            merged[Win(prompt: win.prompt, winner: win.winner, loser: win.loser, weight: 0), default: 0] += win.weight
        }
        let sorted = merged.map { Win(prompt: $0.key.prompt, winner: $0.key.winner, loser: $0.key.loser, weight: $0.value) }
            .sorted { ($0.prompt, $0.winner, $0.loser) < ($1.prompt, $1.winner, $1.loser) }
        var flat: [Float] = []
        flat.reserveCapacity(embeddings.count * dimension)
        for vector in embeddings { flat += Self.normalized(vector) }
        try self.init(models: models, dimension: dimension, embeddings: flat, wins: sorted)
    }

    /// From parts already checked: rows L2-normalised, wins sorted by prompt (``LearnedRanking`` builds these).
    init(models: [String], dimension: Int, embeddings: [Float], wins: [Win], promptShares: [PromptShare]? = nil) throws(RankingIndexError) {
        precondition(promptShares == nil || promptShares?.count == embeddings.count / dimension)
        self.promptShares = promptShares
        self.models = models
        self.dimension = dimension
        self.promptCount = embeddings.count / dimension
        self.embeddings = embeddings
        self.wins = wins
        var start = [Int](repeating: 0, count: promptCount + 1)
        for win in wins { start[win.prompt + 1] += 1 }
        for index in 0..<promptCount { start[index + 1] += start[index] }
        self.promptStart = start
    }

    /// An index of no prompts over `models`: a router that starts cold and learns everything online.
    public static func empty(models: [String], dimension: Int) -> RankingIndex {
        // Nothing to validate: no prompts, no wins.
        try! RankingIndex(models: models, dimension: dimension, embeddings: [], wins: [])
    }

    /// Reads and validates an index file.
    public init(file: SafeTensorsFile) throws(RankingIndexError) {
        func fail(_ message: String) -> RankingIndexError { RankingIndexError("\(file.path): \(message)") }
        guard file.metadata[MetadataKey.format] == Self.format else {
            throw fail(
                "not an sw_ranking index (metadata 'format' is \(file.metadata[MetadataKey.format].map { "'\($0)'" } ?? "missing"), expected '\(Self.format)'); build one with `routerctl train sw_ranking`"
            )
        }
        guard let models = file.metadataJSON(MetadataKey.models, as: [String].self), models.count >= 2
        else { throw fail("metadata 'models' must be a JSON list of at least two model names") }
        guard let embeddingInfo = file.tensors["embeddings"], embeddingInfo.shape.count == 2, embeddingInfo.shape[0] > 0, embeddingInfo.shape[1] > 0
        else { throw fail("tensor 'embeddings' must have shape [prompts, embedding dimension]") }
        guard let winsInfo = file.tensors["wins"], winsInfo.shape.count == 2, winsInfo.shape[1] == 4 else {
            throw fail("tensor 'wins' must have shape [n, 4]: prompt, winner, loser, weight")
        }
        let (promptCount, dimension) = (embeddingInfo.shape[0], embeddingInfo.shape[1])
        if let declared = file.metadata[MetadataKey.embeddingDimension].flatMap(Int.init), declared != dimension {
            throw fail("metadata says embedding_dim \(declared) but 'embeddings' is [\(promptCount), \(dimension)]")
        }
        let embeddings: [Float]
        let table: [Float]
        do {
            embeddings = try file.floats("embeddings")
            table = try file.floats("wins")
        } catch {
            throw RankingIndexError("\(error)")
        }
        guard !embeddings.contains(where: { !$0.isFinite }) else { throw fail("tensor 'embeddings' contains NaN or infinite values") }
        var wins: [Win] = []
        wins.reserveCapacity(winsInfo.shape[0])
        for row in 0..<winsInfo.shape[0] {
            let values = table[row * 4..<row * 4 + 4].map { $0 }
            guard let prompt = Int(exactly: values[0]), let winner = Int(exactly: values[1]), let loser = Int(exactly: values[2]),
                (0..<promptCount).contains(prompt), models.indices.contains(winner), models.indices.contains(loser), winner != loser,
                values[3].isFinite, values[3] > 0
            else { throw fail("row \(row) of 'wins' is not (prompt < \(promptCount), winner ≠ loser < \(models.count), weight > 0): \(values)") }
            if let previous = wins.last, previous.prompt > prompt { throw fail("'wins' must be sorted by prompt (row \(row))") }
            wins.append(Win(prompt: prompt, winner: winner, loser: loser, weight: values[3]))
        }
        var normalized: [Float] = []
        normalized.reserveCapacity(embeddings.count)
        for row in 0..<promptCount { normalized += Self.normalized(Array(embeddings[row * dimension..<(row + 1) * dimension])) }
        try self.init(models: models, dimension: dimension, embeddings: normalized, wins: wins)
    }

    /// The cosine similarity of `embedding` (of the index's dimension, any length) to each indexed
    /// prompt: one matrix–vector product over the normalised rows.
    public func similarities(to embedding: UnsafeBufferPointer<Float>) -> [Float] {
        var similarity = [Float](repeating: 0, count: promptCount)
        embeddings.withUnsafeBufferPointer { matrix in
            similarity.withUnsafeMutableBufferPointer { out in
                cblas_sgemv(
                    CblasRowMajor, CblasNoTrans, Int32(promptCount), Int32(dimension), 1, matrix.baseAddress, Int32(dimension),
                    embedding.baseAddress, 1, 0, out.baseAddress, 1)
            }
        }
        let norm = embedding.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { for prompt in similarity.indices { similarity[prompt] /= norm } }
        return similarity
    }

    /// This index with one more model, `name`, after the others, in none of its battles.
    public func adding(model name: String) throws(RankingIndexError) -> RankingIndex {
        try RankingIndex(models: models + [name], dimension: dimension, embeddings: embeddings, wins: wins, promptShares: promptShares)
    }

    /// This index followed by `other`'s prompts and wins (over the same models, in the same order).
    public func appending(_ other: RankingIndex) throws(RankingIndexError) -> RankingIndex {
        guard other.models == models, other.dimension == dimension else {
            throw RankingIndexError("cannot append an index over other models or another embedding dimension")
        }
        let shifted = other.wins.map { Win(prompt: $0.prompt + promptCount, winner: $0.winner, loser: $0.loser, weight: $0.weight) }
        let shares: [PromptShare]? =
            promptShares == nil && other.promptShares == nil ? nil : rowShares + other.rowShares
        return try RankingIndex(
            models: models, dimension: dimension, embeddings: embeddings + other.embeddings, wins: wins + shifted, promptShares: shares)
    }

    /// Every row's ``PromptShare``: as given, or one prompt with its recorded wins.
    public var rowShares: [PromptShare] {
        promptShares
            ?? (0..<promptCount).map { row in PromptShare(prompt: wins[promptStart[row]..<promptStart[row + 1]].reduce(0) { $0 + Double($1.weight) })
            }
    }

    /// Writes the index, atomically, with extra metadata (encoder, training summary, quantiles).
    public func write(to path: String, metadata extra: [String: String]) throws(SafeTensorsError) {
        var metadata = extra
        metadata[MetadataKey.format] = Self.format
        metadata[MetadataKey.models] = String(decoding: (try? JSONEncoder().encode(models)) ?? Data("[]".utf8), as: UTF8.self)
        metadata[MetadataKey.embeddingDimension] = String(dimension)
        let table = wins.flatMap { [Float($0.prompt), Float($0.winner), Float($0.loser), $0.weight] }
        try SafeTensorsWriter.write(
            [
                // Float16 halves the shipped index; cosine similarities move by about 1e-3.
                .init(name: "embeddings", shape: [promptCount, dimension], values: embeddings, half: true),
                .init(name: "wins", shape: [wins.count, 4], values: table),
            ], metadata: metadata, to: path)
    }

    static func normalized(_ vector: [Float]) -> [Float] {
        let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? vector.map { $0 / norm } : vector
    }
}
