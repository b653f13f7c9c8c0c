import CBLAS
import Foundation
import SafeTensors
import StableHash

/// A problem with learned corrections or their file, naming the file where there is one.
public struct CorrectionError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// How outcomes correct a quality model's predictions (``LearnedCorrections``).
public struct CorrectionSettings: Sendable, Hashable {
    /// κ: the ridge penalty of each model's own correction, in outcomes (each outcome's features
    /// have squared length 2). Larger trusts the trained weights longer.
    public var prior = 100.0
    /// κ_d: the same for the correction every model shares (the prompt's difficulty, as outcomes of
    /// any model say it). Very large turns sharing off.
    public var difficultyPrior = 100.0
    /// Corrected qualities stay this far inside (0, 1), so a logit of them stays finite.
    public static let margin = 0.001

    public init() {}

    /// Why these settings cannot be used, or nil.
    public var problem: String? {
        guard prior.isFinite, prior > 0 else { return "prior must be more than 0, not \(prior)" }
        guard difficultyPrior.isFinite, difficultyPrior > 0 else { return "difficulty_prior must be more than 0, not \(difficultyPrior)" }
        return nil
    }
}

/// What a quality model learned online from outcomes: a linear correction of each model's
/// predicted quality on the prompt's embedding, fitted by ridge regression to the *residuals*,
/// the qualities reported minus what the trained model predicted.
///
/// With features x = (embedding, 1) and residuals rᵢ = yᵢ − pᵢ:
///
/// - the shared correction w = (Σᵢ xᵢxᵢᵀ + κ_d I)⁻¹ Σᵢ xᵢrᵢ, over every model's outcomes: how much
///   better or worse than predicted any model does on prompts like this (their difficulty), so one
///   model's result says something about every model;
/// - each model's own v_m = (Σ_{i∈m} xᵢxᵢᵀ + κ I)⁻¹ Σ_{i∈m} xᵢ(rᵢ − xᵢᵀw): what is left of its
///   residuals.
///
/// A prompt's corrected quality for m is p_m + xᵀw + xᵀv_m, kept inside (0, 1). The state is the
/// sums Σxxᵀ and Σxr per group, so it takes a fixed number of bytes whatever the outcomes, is the
/// same in any order of arrival, and a decision costs one small matrix–vector product. The ridge
/// penalties shrink thin evidence toward the trained model; Thompson sampling draws from the fits'
/// Gaussian posteriors.
public struct LearnedCorrections: Sendable {
    public static let format = "llm-router.classifier.learned/2"

    /// The models outcomes are about.
    public let models: [String]
    public let dimension: Int
    /// What the residuals were taken against (a fingerprint of the trained weights): residuals
    /// against other weights mean nothing, so a state learned against them is not read.
    public let basis: String
    /// Outcomes folded in since the state began.
    public private(set) var events = 0
    /// Per group (0 shared, 1 + m model m): Σ x xᵀ, [features × features], and Σ x r.
    private var gram: [[Double]]
    private var moment: [[Double]]
    /// Outcomes per group.
    private var counts: [Int]
    /// The fit the sums give (``refit(settings:)``): the corrections' coefficients, [groups × features], and
    /// the Cholesky factor of its penalised Gram matrix, for the posterior's variance.
    private var coefficients: [Float]
    private var factors: [[Double]]

    /// Embedding and bias.
    public var features: Int { dimension + 1 }

    public init(models: [String], dimension: Int, basis: String) {
        self.models = models
        self.dimension = dimension
        self.basis = basis
        let groups = models.count + 1
        gram = Array(repeating: [Double](repeating: 0, count: (dimension + 1) * (dimension + 1)), count: groups)
        moment = Array(repeating: [Double](repeating: 0, count: dimension + 1), count: groups)
        counts = Array(repeating: 0, count: groups)
        coefficients = [Float](repeating: 0, count: groups * (dimension + 1))
        factors = Array(repeating: [], count: groups)
    }

    /// Outcomes behind the state.
    public var count: Int { counts[0] }

    /// Bytes the state takes in memory: two Gram matrices' worth per group (the sums and the
    /// factor), whatever the number of outcomes.
    public static func bytes(models: Int, dimension: Int) -> Int {
        let features = dimension + 1
        return (models + 1)
            * (2 * features * features * MemoryLayout<Double>.stride + features * (MemoryLayout<Double>.stride + MemoryLayout<Float>.stride))
    }
    public var bytes: Int { Self.bytes(models: models.count, dimension: dimension) }

    /// One outcome to fold: `quality` in [0, 1] of `model` (an index into ``models``), whose
    /// trained prediction on the prompt was `predicted`.
    public struct Outcome: Sendable {
        public var embedding: [Float]
        public var model: Int
        public var quality: Double
        public var predicted: Double
        public init(embedding: [Float], model: Int, quality: Double, predicted: Double) {
            self.embedding = embedding
            self.model = model
            self.quality = quality
            self.predicted = predicted
        }
    }

    /// Folds outcomes into the sums (all or none), then refits.
    public mutating func fold(_ outcomes: [Outcome], settings: CorrectionSettings) throws(CorrectionError) {
        for outcome in outcomes {
            guard outcome.embedding.count == dimension, outcome.embedding.allSatisfy(\.isFinite) else {
                throw CorrectionError("an outcome's embedding must be \(dimension) finite floats")
            }
            guard models.indices.contains(outcome.model) else {
                throw CorrectionError("model \(outcome.model) is not one of the \(models.count) models")
            }
            guard (0...1).contains(outcome.quality) else { throw CorrectionError("a quality must be between 0 and 1, not \(outcome.quality)") }
            guard outcome.predicted.isFinite, (0...1).contains(outcome.predicted) else {
                throw CorrectionError("a prediction must be between 0 and 1, not \(outcome.predicted)")
            }
        }
        // Each group's rows at once: one rank-k update of its Gram matrix (dsyrk).
        var rows = Array(repeating: [Double](), count: models.count + 1)
        for outcome in outcomes {
            let x = Self.features(of: outcome.embedding)
            let residual = outcome.quality - outcome.predicted
            for group in [0, 1 + outcome.model] {
                rows[group] += x
                for index in x.indices { moment[group][index] += x[index] * residual }
                counts[group] += 1
            }
        }
        let n = Int32(features)
        for group in rows.indices where !rows[group].isEmpty {
            let k = Int32(rows[group].count / features)
            var sums = gram[group]
            sums.withUnsafeMutableBufferPointer { g in
                cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, k, 1, rows[group], n, 1, g.baseAddress, n)
            }
            gram[group] = sums
        }
        events += outcomes.count
        refit(settings: settings)
    }

    /// (embedding normalised, 1).
    static func features(of embedding: some Collection<Float>) -> [Double] {
        var norm = 0.0
        for value in embedding { norm += Double(value) * Double(value) }
        let scale = norm > 0 ? 1 / norm.squareRoot() : 0
        return embedding.map { Double($0) * scale } + [1]
    }

    /// Solves the ridge fits from the sums: the shared one, then each model's on what the shared one leaves.
    public mutating func refit(settings: CorrectionSettings) {
        let n = features
        func solve(_ group: Int, penalty: Double, target: [Double]) -> [Double] {
            guard counts[group] > 0 else {
                factors[group] = []
                return [Double](repeating: 0, count: n)
            }
            // The upper triangle holds the sums (row-major), which is the lower one to column-major LAPACK.
            var matrix = gram[group]
            for index in 0..<n { matrix[index * n + index] += penalty }
            var solution = target
            var order = Int32(n)
            var columns: Int32 = 1
            var info: Int32 = 0
            var lower = CChar(UInt8(ascii: "L"))
            dposv_(&lower, &order, &columns, &matrix, &order, &solution, &order, &info)
            guard info == 0 else {
                factors[group] = []
                return [Double](repeating: 0, count: n)
            }
            factors[group] = matrix
            return solution
        }
        let shared = solve(0, penalty: settings.difficultyPrior, target: moment[0])
        for index in 0..<n { coefficients[index] = Float(shared[index]) }
        for m in models.indices {
            // Σ x (r − xᵀw) = Σ x r − (Σ x xᵀ) w, with the Gram matrix's upper triangle mirrored.
            var target = moment[1 + m]
            let g = gram[1 + m]
            for row in 0..<n {
                var total = 0.0
                for column in 0..<n { total += (row <= column ? g[row * n + column] : g[column * n + row]) * shared[column] }
                target[row] -= total
            }
            let own = solve(1 + m, penalty: settings.prior, target: target)
            for index in 0..<n { coefficients[(1 + m) * n + index] = Float(own[index]) }
        }
    }

    /// The corrections for a prompt, and how uncertain they are.
    public struct Correction: Sendable {
        /// Each model's xᵀw + xᵀv_m, added to its trained quality.
        public var shifts: [Double]
        /// The variance of xᵀw: a Bernoulli outcome's at most (¼) times xᵀ(Σxxᵀ + κ_d I)⁻¹x.
        public var difficultyVariance: Double
        /// The variance of each model's xᵀv_m, the same with its own sums and κ.
        public var variances: [Double]

        /// The trained qualities corrected, kept inside (0, 1).
        public func applied(to qualities: [Double]) -> [Double] {
            qualities.indices.map { Self.clamped(qualities[$0] + shifts[$0]) }
        }

        /// `count` draws of the corrected qualities from N(xᵀw, var) + N(xᵀv_m, var_m) around the
        /// trained ones, the shared part drawn once per draw for every model.
        public func draws(_ count: Int, around qualities: [Double], generator: inout SplitMix64) -> [[Double]] {
            (0..<count).map { _ in
                let shared = Double(generator.gaussian()) * difficultyVariance.squareRoot()
                return qualities.indices.map {
                    Self.clamped(qualities[$0] + shifts[$0] + shared + Double(generator.gaussian()) * variances[$0].squareRoot())
                }
            }
        }

        static func clamped(_ quality: Double) -> Double {
            min(1 - CorrectionSettings.margin, max(CorrectionSettings.margin, quality))
        }
    }

    /// Each model's correction for a prompt's embedding (of ``dimension``, any norm). With
    /// `uncertainty`, also the posterior variances (a triangular solve per group, for Thompson
    /// sampling); without, they are 0.
    public func correction(embedding: UnsafeBufferPointer<Float>, settings: CorrectionSettings, uncertainty: Bool = false) -> Correction {
        precondition(embedding.count == dimension)
        // Every group's xᵀ(coefficients) in one matrix–vector product, on the decision's path.
        var norm: Float = 0
        for value in embedding { norm += value * value }
        let scale = norm > 0 ? 1 / norm.squareRoot() : 0
        var input = [Float](repeating: 1, count: features)
        for index in 0..<dimension { input[index] = embedding[index] * scale }
        var products = [Float](repeating: 0, count: models.count + 1)
        coefficients.withUnsafeBufferPointer { matrix in
            products.withUnsafeMutableBufferPointer { out in
                cblas_sgemv(
                    CblasRowMajor, CblasNoTrans, Int32(models.count + 1), Int32(features), 1, matrix.baseAddress, Int32(features), input, 1, 0,
                    out.baseAddress, 1)
            }
        }
        var correction = Correction(
            shifts: models.indices.map { Double(products[0]) + Double(products[1 + $0]) }, difficultyVariance: 0,
            variances: Array(repeating: 0, count: models.count))
        guard uncertainty else { return correction }
        let x = Self.features(of: embedding)
        func variance(_ group: Int, penalty: Double) -> Double {
            // No outcomes: the penalty alone, xᵀx / κ.
            guard !factors[group].isEmpty else { return 0.25 * x.reduce(0) { $0 + $1 * $1 } / penalty }
            var y = x
            var order = Int32(features)
            var columns: Int32 = 1
            var info: Int32 = 0
            var lower = CChar(UInt8(ascii: "L"))
            var plain = CChar(UInt8(ascii: "N"))
            var nonUnit = CChar(UInt8(ascii: "N"))
            // With A = L Lᵀ, xᵀA⁻¹x = ‖L⁻¹x‖².
            dtrtrs_(&lower, &plain, &nonUnit, &order, &columns, factors[group], &order, &y, &order, &info)
            return info == 0 ? 0.25 * y.reduce(0) { $0 + $1 * $1 } : 0.25 * x.reduce(0) { $0 + $1 * $1 } / penalty
        }
        correction.difficultyVariance = variance(0, penalty: settings.difficultyPrior)
        correction.variances = models.indices.map { variance(1 + $0, penalty: settings.prior) }
        return correction
    }

    // MARK: The file format

    /// Writes the sums crash-safely (synced, renamed into place), readable only by its writer, in
    /// Float64, so a restart fits exactly what was learned.
    public func write(to path: String) throws(SafeTensorsError) {
        let groups = models.count + 1
        let metadata = [
            "format": Self.format, "models": String(decoding: (try? JSONEncoder().encode(models)) ?? Data("[]".utf8), as: UTF8.self),
            "embedding_dim": String(dimension), "events": String(events), "basis": basis,
        ]
        try SafeTensorsWriter.write(
            [
                .init(name: "gram", shape: [groups, features, features], doubles: gram.flatMap { $0 }),
                .init(name: "moment", shape: [groups, features], doubles: moment.flatMap { $0 }),
                .init(name: "counts", shape: [groups], values: counts.map(Float.init)),
            ], metadata: metadata, to: path, durable: true, mode: 0o600)
    }

    /// Reads a state written by ``write(to:)`` for the same models, embedding dimension and basis, and fits it.
    public init(file: SafeTensorsFile, models: [String], dimension: Int, basis: String, settings: CorrectionSettings) throws(CorrectionError) {
        func fail(_ message: String) -> CorrectionError { CorrectionError("\(file.path): \(message)") }
        guard file.metadata["format"] == Self.format else { throw fail("not a classifier's learned state (metadata 'format')") }
        guard let stored = file.metadataJSON("models", as: [String].self) else { throw fail("metadata 'models' is missing") }
        guard stored == models else { throw fail("learned for models \(stored), and this router's are \(models)") }
        guard file.metadata["embedding_dim"].flatMap(Int.init) == dimension else {
            throw fail("learned with \(file.metadata["embedding_dim"] ?? "?")-d embeddings; this router's encoder gives \(dimension)-d")
        }
        guard file.metadata["basis"] == basis else {
            throw fail(
                "learned against other weights (\(file.metadata["basis"] ?? "unnamed"), these are \(basis)): its residuals do not apply to them")
        }
        self.init(models: models, dimension: dimension, basis: basis)
        let groups = models.count + 1
        let n = features
        let gramValues: [Double]
        let momentValues: [Double]
        let countValues: [Float]
        do {
            gramValues = try file.doubles("gram", shape: [groups, n, n])
            momentValues = try file.doubles("moment", shape: [groups, n])
            countValues = try file.floats("counts", shape: [groups])
        } catch {
            throw fail("\(error.message)")
        }
        guard gramValues.allSatisfy(\.isFinite), momentValues.allSatisfy(\.isFinite),
            countValues.allSatisfy({ $0 >= 0 && $0 == $0.rounded() && $0 < 1e12 })
        else { throw fail("the sums are not finite, or the counts not whole") }
        for group in 0..<groups {
            gram[group] = Array(gramValues[group * n * n..<(group + 1) * n * n])
            moment[group] = Array(momentValues[group * n..<(group + 1) * n])
            counts[group] = Int(countValues[group])
        }
        events = file.metadata["events"].flatMap(Int.init) ?? counts[0]
        refit(settings: settings)
    }
}
