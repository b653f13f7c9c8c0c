import Foundation
import QualityModel
import RouterConfig
import RouterEngine
import RouterEvaluation
import RouterPluginHost
import RouterTraining
import RouterVocabulary
import TextEncoder
import TrainingRows

/// The many-model evaluation: a per-prompt quality file with prices, λ swept to draw each
/// router's quality–cost curve, against every single model, the oracle, and the kNN and logistic
/// baselines trained in the same run on the file's other prompts.
public struct CostEvaluation {
    public var file: String
    public var catalogue: ModelCatalogue
    /// The prompts evaluated: split positions in [low, high); baselines train on positions ≥ high.
    public var band: (low: Double, high: Double)
    public var baselines: Bool
    /// The model to compare costs with; by default the best single model.
    public var reference: String?
    public var encoderModel = "models/all-MiniLM-L6-v2"
    public var progress: CachedEmbeddings.Progress = { _, _, _ in }

    public init(file: String, catalogue: ModelCatalogue, band: (low: Double, high: Double), baselines: Bool, reference: String?) {
        self.file = file
        self.catalogue = catalogue
        self.band = band
        self.baselines = baselines
        self.reference = reference
    }

    /// A predictor of every evaluated model's quality on each test prompt.
    struct Predictor {
        var name: String
        var predicted: [[Double]]
    }

    /// One router's (or baseline's) curve against the reference.
    public struct Row: Sendable {
        public var name: String
        public var summary: QualityCostEvaluation.Summary
        public var interval: (low: Double, high: Double)
        /// The cheapest λ that reaches the reference's quality, and where it lands.
        public var lambda: (lambda: Double, point: CostQuality)?
    }

    public struct Report {
        public var testPrompts: Int
        public var trainPrompts: Int
        public var models: [String]
        /// Models rated on under 95% of rows, and rated models without a price: left out.
        public var dropped: [String]
        public var unpriced: [String]
        /// Rows missing one of the models: left out.
        public var incompleteRows: Int
        /// Routers that could not be evaluated here, and why.
        public var skipped: [(router: String, reason: String)]
        public var reference: CostQuality
        public var oracle: CostQuality
        public var singles: [CostQuality]
        public var singleSummary: QualityCostEvaluation.Summary
        public var rows: [Row]
        /// The results as results.json records them.
        public var records: [[String: Any]]
    }

    public func run(routers: [RouterInstance]) throws -> Report {
        let all = try QualityFile.read(file)
        guard !all.isEmpty else { throw EvaluationRunError("\(file) has no rows") }
        // Models rated on at least 95% of the rows and priced; then the rows that rate all of them.
        let rated = RatedModels(records: all, catalogue: catalogue)
        let (models, dropped, unpriced) = (rated.models, rated.sparse, rated.unpriced)
        guard models.count >= 2 else { throw EvaluationRunError("\(file): fewer than two models are rated on 95% of the rows and priced") }
        let complete = rated.complete(all)
        let test = complete.filter { (band.low..<band.high).contains(PromptSplit.position($0.prompt)) }
        let train = complete.filter { PromptSplit.position($0.prompt) >= band.high }
        let evaluation = QualityCostEvaluation(
            models: models, quality: test.map { record in models.map { record.quality[$0]! } },
            cost: test.map { record in
                let tokens = ModelCatalogue.estimatedTokens(record.prompt)
                return models.map { catalogue.model(named: $0)!.expectedCost(promptTokens: tokens) }
            })

        let embed = { (prompts: [String]) throws -> [[Float]] in
            try CachedEmbeddings.embed(prompts, cache: CachedEmbeddings.defaultPath(.head), policy: .head, progress: progress) {
                try SentenceEncoder(modelDirectory: encoderModel)
            }
        }
        var predictors: [Predictor] = []
        var skipped: [(router: String, reason: String)] = []
        for router in routers {
            guard router.predictsQualities else {
                skipped.append((router.name, "predicts only P(strong wins); skipped here (its APGR is in the binary tables)"))
                continue
            }
            let canonical = router.candidates.map { catalogue.model(named: $0.name)?.name ?? $0.name }
            let columns = models.map { model in canonical.firstIndex(of: catalogue.model(named: model)?.name ?? model) }
            guard columns.allSatisfy({ $0 != nil }) else {
                let missing = models.indices.filter { columns[$0] == nil }.map { models[$0] }
                skipped.append((router.name, "its candidates lack \(missing.joined(separator: ", ")); skipped"))
                continue
            }
            let prompts = test.map(\.prompt)
            let embeddings = try router.encoder.map { _ in try embed(prompts) }
            var predicted: [[Double]] = []
            for (index, prompt) in prompts.enumerated() {
                do {
                    let qualities = try router.qualities(prompt, embedding: embeddings?[index])
                    predicted.append(columns.map { qualities[$0!] })
                } catch {
                    throw EvaluationRunError("router '\(router.name)': \(error.message)")
                }
            }
            predictors.append(Predictor(name: router.name, predicted: predicted))
        }
        if baselines {
            let trainEmbeddings = try embed(train.map(\.prompt))
            let testEmbeddings = try embed(test.map(\.prompt))
            let labels = train.map { record in models.map { record.quality[$0].map(Float.init) } }
            let knn = NearestNeighbourQuality(k: 100, embeddings: trainEmbeddings, quality: labels)
            predictors.append(Predictor(name: "knn-100", predicted: knn.predict(testEmbeddings)))
            var options = QualityTrainingOptions()
            options.features = false
            options.hidden = 0
            let trainer = QualityTrainer(
                examples: QualityExamples(embeddings: trainEmbeddings, prompts: train.map(\.prompt), models: models, quality: labels, battles: []),
                validationPrompts: TrainingSet.validationPrompts(train.map(\.prompt), fraction: 0.15), options: options)
            let logistic = trainer.run { _ in }.model
            predictors.append(Predictor(name: "logistic", predicted: testEmbeddings.map { logistic.probabilities(input: $0) }))
        }

        let singles = evaluation.singleModels
        let referencePoint = singles.first { $0.label == reference } ?? evaluation.bestSingleModel
        let oracle = evaluation.oracle
        let singleSummary = evaluation.summary(singles, reference: referencePoint.label)
        var rows: [Row] = []
        var records: [[String: Any]] = []
        for predictor in predictors {
            let points = evaluation.sweep(predicted: predictor.predicted)
            let summary = evaluation.summary(points, reference: referencePoint.label)
            let interval = evaluation.aiqInterval(predicted: predictor.predicted)
            let lambda = QualityCostEvaluation.cheapestLambda(points, reaching: referencePoint.quality)
            rows.append(Row(name: predictor.name, summary: summary, interval: interval, lambda: lambda))
            records.append([
                "file": file, "router": predictor.name, "aiq": summary.aiq, "aiq_ci": [interval.low, interval.high],
                "quality_at_reference_cost": summary.qualityAtReferenceCost,
                "cost_to_match_reference": summary.costToMatchReference ?? NSNull(), "reference": referencePoint.label,
                "test_prompts": test.count, "models": models, "lambda_reaching_reference": lambda?.lambda ?? NSNull(),
                "hull": summary.hull.map { ["cost": $0.cost, "quality": $0.quality] },
            ])
        }
        records.append([
            "file": file, "router": "single models", "aiq": singleSummary.aiq, "oracle": ["cost": oracle.cost, "quality": oracle.quality],
            "singles": singles.map { ["model": $0.label, "cost": $0.cost, "quality": $0.quality] },
        ])
        return Report(
            testPrompts: test.count, trainPrompts: train.count, models: models, dropped: dropped, unpriced: unpriced,
            incompleteRows: all.count - complete.count, skipped: skipped, reference: referencePoint, oracle: oracle, singles: singles,
            singleSummary: singleSummary, rows: rows, records: records)
    }
}
