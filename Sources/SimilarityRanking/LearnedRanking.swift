import CBLAS
import Foundation
import SafeTensors
import StableHash

/// What an `sw_ranking` router learned online: the prompts outcomes were reported on, and the
/// wins those outcomes amount to, in the index's own terms, so that scoring simply counts
/// them next to the indexed battles (``RankingIndex/appending(_:)``).
///
/// A pairwise outcome is one battle. Pointwise outcomes (a quality for one model) pair up per
/// prompt, as ``QualityReader`` pairs a quality file's values: each new quality plays every
/// other model's quality already reported on that prompt, the higher winning and equal values
/// tying.
///
/// A quality is also a battle against ``par``, a virtual opponent that stands for the prompt's
/// difficulty: quality q is a win of weight q over par and a loss of weight 1 − q. So one model's
/// result teaches on its own (a service usually sees one model's answer per prompt), and in the
/// similarity-weighted fit par's rating near a query is the local difficulty that every model's
/// outcomes there estimate together, as an item's difficulty does in item response theory; the
/// models' ratings against it are their local success odds. The index's own battles and the fit's
/// prior ties are what it is shrunk toward where outcomes are few.
///
/// Scoring costs one similarity per indexed row, so with ``maxAnchors`` the learned prompts score
/// as at most that many anchors: until there are that many, each prompt is its own; past it, a new
/// prompt joins the anchor most similar to it, which then points along its members' summed
/// embeddings and weighs as their number. Route time stays bounded however much is learned; the
/// price is that prompts sharing an anchor share its similarity to a query.
///
/// On disk it is a safetensors file: `embeddings` [prompts × dim] F16 (as in the index), `wins` [n × 4] as in the
/// index, `hashes` [prompts × 4] (each prompt text's FNV-1a 64 in 16-bit pieces, exact in F32),
/// `qualities` [k × 3] (prompt, model, quality) and, with anchors, `anchors` [prompts] (each
/// prompt's anchor); metadata `format` = `llm-router.sw_ranking.learned/1`, `models`,
/// `embedding_dim` and `events`.
public struct LearnedRanking: Sendable {
    public static let format = "llm-router.sw_ranking.learned/1"
    /// The virtual opponent of one-sided outcomes; in ``index()`` it follows the real models.
    public static let par = "(par)"

    public enum Outcome: Sendable, Hashable {
        /// `score` 1: the model won against `against`; 0: it lost; 0.5: a tie.
        case pairwise(against: Int, score: Double)
        case pointwise(Double)
    }

    public let models: [String]
    public let dimension: Int
    /// Outcomes folded in, ever.
    public private(set) var events = 0
    private var hashes: [UInt64] = []
    private var promptOf: [UInt64: Int] = [:]
    /// [prompts × dimension], rows L2-normalised.
    private var embeddings: [Float] = []
    private var wins: [RankingIndex.Win] = []
    /// Per learned prompt, the latest quality reported for each model.
    private var qualities: [Int: [Int: Float]] = [:]
    /// At most this many anchors score the learned prompts; 0: every prompt scores on its own.
    public let maxAnchors: Int
    /// With anchors: each prompt's anchor, each anchor's summed member embeddings [slots × dimension],
    /// their norms, their member counts (0: a free slot) and the free slots.
    private var anchorOf: [Int] = []
    private var anchorSums: [Float] = []
    private var anchorNorms: [Float] = []
    private var anchorMembers: [Int] = []
    private var freeAnchors: [Int] = []

    public init(models: [String], dimension: Int, maxAnchors: Int = 0) {
        precondition(maxAnchors >= 0)
        self.models = models
        self.dimension = dimension
        self.maxAnchors = maxAnchors
    }

    /// Anchors that hold at least one prompt.
    public var anchorCount: Int { maxAnchors == 0 ? promptCount : anchorMembers.count - freeAnchors.count }

    public var promptCount: Int { hashes.count }
    public var winCount: Int { wins.count }

    /// Bytes a learned prompt holds in memory apart from its wins and qualities: its embedding,
    /// its hash and its entry in the hash table. (On disk the embedding is half the size.)
    var promptBytes: Int { dimension * MemoryLayout<Float>.stride + 3 * MemoryLayout<UInt64>.stride }
    static let winBytes = MemoryLayout<RankingIndex.Win>.stride
    /// A remembered quality: its model, its value and its share of the table.
    static let qualityBytes = 32

    /// What the state holds in memory, about.
    public var bytes: Int {
        promptCount * promptBytes + wins.count * Self.winBytes + qualities.values.reduce(0) { $0 + $1.count } * Self.qualityBytes
            + anchorOf.count * MemoryLayout<Int>.stride + anchorMembers.count * (dimension + 1) * MemoryLayout<Float>.stride
    }

    /// Forgets the oldest learned prompts, with their wins and qualities, until the state holds
    /// at most `limit` bytes; returns how many prompts went. Traffic keeps teaching, so the
    /// newest outcomes are the ones worth their memory.
    @discardableResult
    public mutating func keep(within limit: Int) -> Int {
        var excess = bytes - limit
        guard excess > 0 else { return 0 }
        var winsOf = [Int](repeating: 0, count: promptCount)
        for win in wins { winsOf[win.prompt] += 1 }
        var dropped = 0
        while excess > 0, dropped < promptCount {
            excess -= promptBytes + winsOf[dropped] * Self.winBytes + (qualities[dropped]?.count ?? 0) * Self.qualityBytes
            dropped += 1
        }
        if maxAnchors > 0 {
            for row in 0..<dropped { leaveAnchor(row) }
            anchorOf.removeFirst(dropped)
        }
        hashes.removeFirst(dropped)
        promptOf = Dictionary(uniqueKeysWithValues: hashes.enumerated().map { ($1, $0) })
        embeddings.removeFirst(dropped * dimension)
        wins = wins.compactMap { win in
            guard win.prompt >= dropped else { return nil }
            var moved = win
            moved.prompt -= dropped
            return moved
        }
        qualities = Dictionary(uniqueKeysWithValues: qualities.compactMap { $0.key >= dropped ? ($0.key - dropped, $0.value) : nil })
        return dropped
    }

    /// Folds one outcome about `model` (an index into ``models``) on `prompt`.
    public mutating func fold(prompt: String, embedding: [Float], model: Int, outcome: Outcome) throws(RankingIndexError) {
        guard embedding.count == dimension, embedding.allSatisfy(\.isFinite) else {
            throw RankingIndexError("an outcome's embedding must be \(dimension) finite floats")
        }
        guard models.indices.contains(model) else { throw RankingIndexError("model \(model) is not one of the \(models.count) models") }
        let hash = FNV1a.hash(prompt)
        let row: Int
        if let known = promptOf[hash] {
            row = known
        } else {
            row = hashes.count
            hashes.append(hash)
            promptOf[hash] = row
            // Kept at Float16 precision, as the index file keeps its embeddings, so what a restart
            // reads back from disk scores exactly as what was learned in memory.
            embeddings += RankingIndex.normalized(embedding).map { Float(Float16($0)) }
            if maxAnchors > 0 { joinAnchor(row) }
        }
        switch outcome {
        case .pairwise(let against, let score):
            guard models.indices.contains(against), against != model, [0, 0.5, 1].contains(score) else {
                throw RankingIndexError("a pairwise outcome needs another model and a score of 0, 0.5 or 1")
            }
            record(row, model, against, score: score)
        case .pointwise(let quality):
            guard (0...1).contains(quality) else { throw RankingIndexError("a quality must be between 0 and 1, not \(quality)") }
            let value = Float(quality)
            for (other, otherValue) in qualities[row, default: [:]] where other != model {
                record(row, model, other, score: value > otherValue ? 1 : value < otherValue ? 0 : 0.5)
            }
            qualities[row, default: [:]][model] = value
            let par = models.count
            if value > 0 { wins.append(RankingIndex.Win(prompt: row, winner: model, loser: par, weight: value)) }
            if value < 1 { wins.append(RankingIndex.Win(prompt: row, winner: par, loser: model, weight: 1 - value)) }
        }
        events += 1
    }

    private mutating func record(_ prompt: Int, _ model: Int, _ other: Int, score: Double) {
        switch score {
        case 1: wins.append(RankingIndex.Win(prompt: prompt, winner: model, loser: other, weight: 1))
        case 0: wins.append(RankingIndex.Win(prompt: prompt, winner: other, loser: model, weight: 1))
        default:
            wins.append(RankingIndex.Win(prompt: prompt, winner: model, loser: other, weight: 0.5))
            wins.append(RankingIndex.Win(prompt: prompt, winner: other, loser: model, weight: 0.5))
        }
    }

    /// Gives learned prompt `row` an anchor: a slot of its own while fewer than ``maxAnchors`` are
    /// taken, else the anchor pointing closest to it.
    private mutating func joinAnchor(_ row: Int, slot chosen: Int? = nil) {
        let start = row * dimension
        let slot: Int
        if let chosen {
            slot = chosen
        } else if anchorCount < maxAnchors {
            slot = freeAnchors.popLast() ?? anchorMembers.count
        } else {
            slot = nearestAnchor(to: start)
        }
        // A new slot, or one a stored state names past those taken so far.
        while anchorMembers.count <= slot {
            anchorMembers.append(0)
            anchorNorms.append(0)
            anchorSums += repeatElement(0, count: dimension)
        }
        for column in 0..<dimension { anchorSums[slot * dimension + column] += embeddings[start + column] }
        anchorMembers[slot] += 1
        updateNorm(slot)
        anchorOf.append(slot)
    }

    /// Takes forgotten prompt `row` out of its anchor, freeing the anchor when it was the last.
    private mutating func leaveAnchor(_ row: Int) {
        let slot = anchorOf[row]
        anchorMembers[slot] -= 1
        if anchorMembers[slot] == 0 {
            for column in 0..<dimension { anchorSums[slot * dimension + column] = 0 }
            freeAnchors.append(slot)
        } else {
            for column in 0..<dimension { anchorSums[slot * dimension + column] -= embeddings[row * dimension + column] }
        }
        updateNorm(slot)
    }

    private mutating func updateNorm(_ slot: Int) {
        var norm: Float = 0
        for column in slot * dimension..<(slot + 1) * dimension { norm += anchorSums[column] * anchorSums[column] }
        anchorNorms[slot] = norm.squareRoot()
    }

    /// The held anchor whose direction has the largest cosine with the prompt at `start` (the lowest slot on a tie).
    private func nearestAnchor(to start: Int) -> Int {
        let slots = anchorMembers.count
        var dots = [Float](repeating: 0, count: slots)
        anchorSums.withUnsafeBufferPointer { matrix in
            embeddings.withUnsafeBufferPointer { rows in
                dots.withUnsafeMutableBufferPointer { out in
                    cblas_sgemv(
                        CblasRowMajor, CblasNoTrans, Int32(slots), Int32(dimension), 1, matrix.baseAddress, Int32(dimension),
                        rows.baseAddress! + start, 1, 0, out.baseAddress, 1)
                }
            }
        }
        var best = -1
        var bestCosine = -Float.infinity
        for slot in 0..<slots where anchorMembers[slot] > 0 && anchorNorms[slot] > 0 {
            let cosine = dots[slot] / anchorNorms[slot]
            if cosine > bestCosine { (best, bestCosine) = (slot, cosine) }
        }
        return best >= 0 ? best : anchorMembers.firstIndex { $0 > 0 }!
    }

    /// The learned prompts and wins as an index over the same models followed by ``par``; nil
    /// before any win.
    public func index() throws(RankingIndexError) -> RankingIndex? {
        guard !wins.isEmpty else { return nil }
        let rows = (0..<promptCount).map { Array(embeddings[$0 * dimension..<($0 + 1) * dimension]) }
        return try RankingIndex(models: models + [Self.par], embeddings: rows, wins: wins)
    }

    /// `base` followed by ``par`` and what was learned: the index a learning router scores with,
    /// the same as `base.adding(model: par).appending(index())` but built in one pass, since a
    /// router rebuilds it at every publish. `base` must be over the same models.
    ///
    /// With anchors the learned rows are the anchors, each pointing along its members' summed
    /// embeddings; under `weightUnit` `.prompt` each member's wins are first shared out so that it
    /// weighs as one prompt (the index's ``RankingIndex/promptShares`` say what an anchor holds).
    public func appended(to base: RankingIndex, weightUnit: RankingSettings.WeightUnit = .battle) throws(RankingIndexError) -> RankingIndex {
        guard base.models == models, base.dimension == dimension else {
            throw RankingIndexError("cannot append learned outcomes to an index over other models or another embedding dimension")
        }
        if maxAnchors > 0 { return try anchored(to: base, weightUnit: weightUnit) }
        var rows = base.embeddings
        rows.reserveCapacity(base.embeddings.count + embeddings.count)
        // Normalised again after the Float16 rounding, as an index built from these rows would be.
        for row in 0..<promptCount {
            let start = row * dimension
            var norm: Float = 0
            for column in start..<start + dimension { norm += embeddings[column] * embeddings[column] }
            let scale = norm > 0 ? 1 / norm.squareRoot() : 1
            for column in start..<start + dimension { rows.append(embeddings[column] * scale) }
        }
        // Learned wins in prompt order (a counting sort: a later outcome may be about an earlier
        // prompt), after the base's, their prompts shifted past the base's.
        var counts = [Int](repeating: 0, count: promptCount + 1)
        for win in wins { counts[win.prompt + 1] += 1 }
        for prompt in 0..<promptCount { counts[prompt + 1] += counts[prompt] }
        var sorted = [RankingIndex.Win](repeating: RankingIndex.Win(prompt: 0, winner: 0, loser: 0, weight: 0), count: wins.count)
        var next = counts
        for win in wins {
            sorted[next[win.prompt]] = win
            next[win.prompt] += 1
        }
        // Each prompt's wins between the same two models summed into one, in (winner, loser) order:
        // outcomes repeated on a prompt must not make scoring it slower, only weigh more.
        let pairs = models.count + 1
        var merged: [RankingIndex.Win] = []
        merged.reserveCapacity(wins.count)
        var weights: [Int: Float] = [:]
        for prompt in 0..<promptCount {
            weights.removeAll(keepingCapacity: true)
            for win in sorted[counts[prompt]..<counts[prompt + 1]] { weights[win.winner * pairs + win.loser, default: 0] += win.weight }
            for (key, weight) in weights.sorted(by: { $0.key < $1.key }) {
                merged.append(RankingIndex.Win(prompt: prompt + base.promptCount, winner: key / pairs, loser: key % pairs, weight: weight))
            }
        }
        return try RankingIndex(models: models + [Self.par], dimension: dimension, embeddings: rows, wins: base.wins + merged)
    }

    /// ``appended(to:weightUnit:)`` with anchors as the learned rows.
    private func anchored(to base: RankingIndex, weightUnit: RankingSettings.WeightUnit) throws(RankingIndexError) -> RankingIndex {
        // Held anchors in slot order become rows after the base's.
        var rowOf = [Int](repeating: -1, count: anchorMembers.count)
        var rows = base.embeddings
        var shares = base.rowShares
        for slot in anchorMembers.indices where anchorMembers[slot] > 0 {
            rowOf[slot] = shares.count
            let scale = anchorNorms[slot] > 0 ? 1 / anchorNorms[slot] : 0
            for column in slot * dimension..<(slot + 1) * dimension { rows.append(anchorSums[column] * scale) }
            shares.append(RankingIndex.PromptShare(prompts: 0, battleWeight: 0, inverseBattleWeight: 0))
        }
        // Each learned prompt's battle weight: under per-prompt weighing its wins are shared out by it.
        var promptWeight = [Float](repeating: 0, count: promptCount)
        for win in wins { promptWeight[win.prompt] += win.weight }
        for row in 0..<promptCount where promptWeight[row] > 0 {
            let share = rowOf[anchorOf[row]]
            shares[share].prompts += 1
            shares[share].battleWeight += Double(promptWeight[row])
            shares[share].inverseBattleWeight += 1 / Double(promptWeight[row])
        }
        let mass = weightUnit == .prompt ? promptWeight : Array(repeating: 1, count: promptCount)
        // Each anchor's wins between the same two models summed into one, in (winner, loser) order.
        let pairs = models.count + 1
        var weights = [Int: [Int: Float]]()
        for win in wins where mass[win.prompt] > 0 {
            weights[rowOf[anchorOf[win.prompt]], default: [:]][win.winner * pairs + win.loser, default: 0] += win.weight / mass[win.prompt]
        }
        var merged: [RankingIndex.Win] = base.wins
        merged.reserveCapacity(base.wins.count + wins.count)
        for (row, byPair) in weights.sorted(by: { $0.key < $1.key }) {
            for (key, weight) in byPair.sorted(by: { $0.key < $1.key }) {
                merged.append(RankingIndex.Win(prompt: row, winner: key / pairs, loser: key % pairs, weight: weight))
            }
        }
        return try RankingIndex(
            models: models + [Self.par], dimension: dimension, embeddings: rows, wins: merged,
            promptShares: weightUnit == .prompt ? shares : base.promptShares.map { $0 + shares[base.promptCount...] })
    }

    /// Writes the state durably: a crash leaves the previous state or this one, never a mix.
    public func write(to path: String) throws(SafeTensorsError) {
        // Filled in place: at every publish these run over every learned prompt and win.
        var pieces = [Float]()
        pieces.reserveCapacity(hashes.count * 4)
        for hash in hashes { for piece in 0..<4 { pieces.append(Float(UInt16(truncatingIfNeeded: hash >> (16 * UInt64(piece))))) } }
        var table = [Float]()
        table.reserveCapacity(wins.count * 4)
        for win in wins {
            table.append(Float(win.prompt))
            table.append(Float(win.winner))
            table.append(Float(win.loser))
            table.append(win.weight)
        }
        let rows = qualities.sorted { $0.key < $1.key }.flatMap { prompt, values in
            values.sorted { $0.key < $1.key }.flatMap { [Float(prompt), Float($0.key), $0.value] }
        }
        let metadata = [
            "format": Self.format, "models": String(decoding: (try? JSONEncoder().encode(models)) ?? Data("[]".utf8), as: UTF8.self),
            "embedding_dim": String(dimension), "events": String(events),
        ]
        try SafeTensorsWriter.write(
            [
                .init(name: "embeddings", shape: [promptCount, dimension], values: embeddings, half: true),
                .init(name: "hashes", shape: [promptCount, 4], values: pieces),
                .init(name: "wins", shape: [wins.count, 4], values: table),
                .init(name: "qualities", shape: [rows.count / 3, 3], values: rows),
            ] + (maxAnchors > 0 ? [.init(name: "anchors", shape: [promptCount], values: anchorOf.map(Float.init))] : []),
            metadata: metadata, to: path, durable: true, mode: 0o600)
    }

    /// Reads a state written by ``write(to:)`` for an index over `models`: models are matched by
    /// name, so a retrained index with other models keeps what it can (outcomes about a model it
    /// no longer has are dropped).
    public init(file: SafeTensorsFile, models: [String], dimension: Int, maxAnchors: Int = 0) throws(RankingIndexError) {
        func fail(_ message: String) -> RankingIndexError { RankingIndexError("\(file.path): \(message)") }
        guard file.metadata["format"] == Self.format else { throw fail("not an sw_ranking learned state (metadata 'format')") }
        guard let stored = file.metadataJSON("models", as: [String].self) else { throw fail("metadata 'models' is missing") }
        guard file.metadata["embedding_dim"].flatMap(Int.init) == dimension else {
            throw fail("learned with \(file.metadata["embedding_dim"] ?? "?")-d embeddings; this router's encoder gives \(dimension)-d")
        }
        let embeddings: [Float]
        let pieces: [Float]
        let table: [Float]
        let rows: [Float]
        do {
            embeddings = try file.floats("embeddings")
            pieces = try file.floats("hashes")
            table = try file.floats("wins")
            rows = try file.floats("qualities")
        } catch {
            throw fail("\(error)")
        }
        let promptCount = pieces.count / 4
        guard embeddings.count == promptCount * dimension, table.count % 4 == 0, rows.count % 3 == 0 else {
            throw fail("tensor shapes disagree (embeddings, hashes, wins [n × 4], qualities [n × 3])")
        }
        self.init(models: models, dimension: dimension, maxAnchors: maxAnchors)
        // Par is stored after the stored models, and read back after this router's.
        let remap = stored.map { models.firstIndex(of: $0) } + [models.count]
        self.embeddings = embeddings
        hashes = (0..<promptCount).map { row in (0..<4).reduce(UInt64(0)) { $0 | UInt64(pieces[row * 4 + $1]) << (16 * UInt64($1)) } }
        for (row, hash) in hashes.enumerated() { promptOf[hash] = row }
        func model(_ value: Float) -> Int? {
            guard let index = Int(exactly: value), remap.indices.contains(index) else { return nil }
            return remap[index]
        }
        for start in stride(from: 0, to: table.count, by: 4) {
            guard let prompt = Int(exactly: table[start]), (0..<promptCount).contains(prompt), let winner = model(table[start + 1]),
                let loser = model(table[start + 2]), winner != loser, table[start + 3] > 0
            else { continue }
            wins.append(RankingIndex.Win(prompt: prompt, winner: winner, loser: loser, weight: table[start + 3]))
        }
        for start in stride(from: 0, to: rows.count, by: 3) {
            guard let prompt = Int(exactly: rows[start]), (0..<promptCount).contains(prompt), let index = model(rows[start + 1]), index < models.count
            else {
                continue
            }
            qualities[prompt, default: [:]][index] = rows[start + 2]
        }
        events = file.metadata["events"].flatMap(Int.init) ?? 0
        guard maxAnchors > 0 else { return }
        // The anchors as written, when they fit this bound; else (another bound, or a state
        // learned without anchors) each prompt joins one again, in the order it was learned.
        let written = (try? file.floats("anchors")).map { $0.compactMap { Int(exactly: $0) } }
        if let written, written.count == promptCount, written.allSatisfy({ (0..<maxAnchors).contains($0) }) {
            for row in 0..<promptCount { joinAnchor(row, slot: written[row]) }
            freeAnchors = anchorMembers.indices.filter { anchorMembers[$0] == 0 }.reversed()
        } else {
            for row in 0..<promptCount { joinAnchor(row) }
        }
    }
}
