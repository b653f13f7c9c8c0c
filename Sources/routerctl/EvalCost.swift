import ArgumentParser
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

/// The many-model half of `routerctl eval`: a per-prompt quality file with prices, λ swept
/// to draw each router's quality–cost curve, against every single model, the oracle, and the
/// kNN and logistic baselines trained in the same run on the file's other prompts.
struct CostEvaluation {
    var file: String
    var catalogue: ModelCatalogue
    /// The prompts evaluated: split positions in [low, high); baselines train on positions ≥ high.
    var band: (low: Double, high: Double)
    var baselines: Bool
    var reference: String?

    /// A predictor of every evaluated model's quality on each test prompt.
    struct Predictor {
        var name: String
        var predicted: [[Double]]
    }

    func run(routers: [RouterInstance], out: String) throws -> [[String: Any]] {
        let all = try QualityFile.read(file)
        guard !all.isEmpty else { throw ValidationError("\(file) has no rows") }
        // Models rated on at least 95% of the rows and priced; then the rows that rate all of them.
        var counts: [String: Int] = [:]
        for record in all { for model in record.quality.keys { counts[model, default: 0] += 1 } }
        let rated = Set(counts.filter { Double($0.value) >= 0.95 * Double(all.count) }.keys)
        let dropped = Set(counts.keys).subtracting(rated).sorted()
        let unpriced = rated.filter { catalogue.model(named: $0) == nil }.sorted()
        let models = rated.subtracting(unpriced).sorted()
        guard models.count >= 2 else { throw ValidationError("\(file): fewer than two models are rated on 95% of the rows and priced") }
        let records = all.filter { record in models.allSatisfy { record.quality[$0] != nil } }
        let test = records.filter { (band.low..<band.high).contains(PromptSplit.position($0.prompt)) }
        let train = records.filter { PromptSplit.position($0.prompt) >= band.high }
        let what = band.low == 0 ? "test share \(band.high)" : "held-out band [\(band.low), \(band.high))"
        print(
            "\n\(file): \(test.count) prompts evaluated (\(what) by prompt hash), \(train.count) beyond it for the baselines; \(models.count) models"
                + (dropped.isEmpty ? "" : "; rated on under 95% of rows, left out: \(dropped.joined(separator: ", "))")
                + (unpriced.isEmpty ? "" : "; no price: \(unpriced.joined(separator: ", "))")
                + (records.count < all.count ? "; \(all.count - records.count) rows missing one of them left out" : ""))
        let evaluation = QualityCostEvaluation(
            models: models, quality: test.map { record in models.map { record.quality[$0]! } },
            cost: test.map { record in
                let tokens = ModelCatalogue.estimatedTokens(record.prompt)
                return models.map { catalogue.model(named: $0)!.expectedCost(promptTokens: tokens) }
            })

        let embed = { (prompts: [String]) throws -> [[Float]] in
            try CachedEmbeddings.embed(prompts, cache: CachedEmbeddings.defaultPath(.head), policy: .head, progress: Progress.embedding) {
                try SentenceEncoder(modelDirectory: "models/all-MiniLM-L6-v2")
            }
        }
        var predictors: [Predictor] = []
        for router in routers {
            guard router.predictsQualities else {
                print("  \(router.name): predicts only P(strong wins); skipped here (its APGR is in the binary tables)")
                continue
            }
            let canonical = router.candidates.map { catalogue.model(named: $0.name)?.name ?? $0.name }
            let columns = models.map { model in canonical.firstIndex(of: catalogue.model(named: model)?.name ?? model) }
            guard columns.allSatisfy({ $0 != nil }) else {
                let missing = models.indices.filter { columns[$0] == nil }.map { models[$0] }
                print("  \(router.name): its candidates lack \(missing.joined(separator: ", ")); skipped")
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
                    throw ValidationError("router '\(router.name)': \(error.message)")
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
        print(
            String(
                format: "  reference %@: quality %.3f at $%.6f per prompt; oracle %.3f at %.1f%% of its cost", referencePoint.label,
                referencePoint.quality, referencePoint.cost, oracle.quality, oracle.cost / referencePoint.cost * 100))
        let widths = [26, 22, 14, 16]
        print(table(header: ["  ROUTER", "AIQ [95% CI]", "Q AT REF COST", "COST TO MATCH REF"], rows: [], widths: widths))
        func row(_ name: String, _ summary: QualityCostEvaluation.Summary, interval: (Double, Double)?) {
            let aiq = String(format: "%.3f", summary.aiq) + (interval.map { String(format: " [%.3f, %.3f]", $0.0, $0.1) } ?? "")
            let match = summary.costToMatchReference.map { String(format: "%.1f%%", $0 * 100) } ?? "never"
            print(table(header: ["  " + name, aiq, String(format: "%.3f", summary.qualityAtReferenceCost), match], rows: [], widths: widths))
        }
        row("single models (hull)", singleSummary, interval: nil)
        var results: [[String: Any]] = []
        var curves: [(name: String, hull: [CostQuality])] = [("single models", singleSummary.hull)]
        for predictor in predictors {
            let points = evaluation.sweep(predicted: predictor.predicted)
            let summary = evaluation.summary(points, reference: referencePoint.label)
            let interval = evaluation.aiqInterval(predicted: predictor.predicted)
            row(predictor.name, summary, interval: interval)
            let lambda = QualityCostEvaluation.cheapestLambda(points, reaching: referencePoint.quality)
            if let lambda {
                print(
                    String(
                        format: "    λ reaching %@'s quality at the least cost: %.4g per USD (quality %.3f at %.1f%% of its cost)",
                        referencePoint.label, lambda.lambda, lambda.point.quality, lambda.point.cost / referencePoint.cost * 100))
            }
            curves.append((predictor.name, summary.hull))
            results.append([
                "file": file, "router": predictor.name, "aiq": summary.aiq, "aiq_ci": [interval.low, interval.high],
                "quality_at_reference_cost": summary.qualityAtReferenceCost,
                "cost_to_match_reference": summary.costToMatchReference ?? NSNull(), "reference": referencePoint.label,
                "test_prompts": test.count, "models": models, "lambda_reaching_reference": lambda?.lambda ?? NSNull(),
                "hull": summary.hull.map { ["cost": $0.cost, "quality": $0.quality] },
            ])
        }
        results.append([
            "file": file, "router": "single models", "aiq": singleSummary.aiq, "oracle": ["cost": oracle.cost, "quality": oracle.quality],
            "singles": singles.map { ["model": $0.label, "cost": $0.cost, "quality": $0.quality] },
        ])
        if !out.isEmpty {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
            let svg = CostPlot.svg(
                title: "\(name): \(test.count) held-out prompts, \(models.count) models",
                subtitle: "mean quality against mean cost per prompt (USD, log scale); hulls of each router's λ sweep",
                singles: singles, oracle: oracle, curves: curves)
            try svg.write(toFile: "\(out)/\(name).cost.svg", atomically: true, encoding: .utf8)
            try PNGRender.write(svg: svg, to: "\(out)/\(name).cost.png")
            print("  wrote \(out)/\(name).cost.svg and .png")
        }
        return results
    }
}
