import CBLAS
import Foundation
import StableHash

/// Bradley–Terry strengths from weighted wins, by Newton's method on the
/// penalised log-likelihood.
///
/// RouteLLM fits the same model as Elo ratings with a logistic regression over
/// every battle; with wins aggregated per model pair the fit touches only the
/// few models involved, which is what makes `sw_ranking` fast. The likelihood
/// is concave and the prior makes it strictly so, so Newton's method (with a
/// step halved until the likelihood rises) converges in a handful of steps,
/// where minorisation–maximisation took hundreds when one pair dominates.
public enum BradleyTerry {
    /// Log-strengths θ, so that P(i beats j) = σ(θᵢ − θⱼ).
    ///
    /// `wins[i * models + j]` is the weight of i beating j (a tie counts ½ each
    /// way). `prior` is the weight of one virtual tied game each model plays
    /// against a reference of strength 1 (θ = 0): it keeps models with no
    /// losses (or no games) finite and pulls sparse evidence toward the middle.
    /// `centres`, one per model, move each model's reference to θ = cᵢ: the
    /// strength it is believed to have before any game (all 0 when nil).
    public static func fit(
        wins: [Double], models: Int, prior: Double, centres: [Double]? = nil, iterations: Int = 50, tolerance: Double = 1e-10
    ) -> [Double] {
        precondition(wins.count == models * models && prior > 0 && (centres?.count ?? models) == models)
        var theta = centres ?? [Double](repeating: 0, count: models)
        var likelihood = logLikelihood(theta, wins: wins, models: models, prior: prior, centres: centres)
        var gradient = [Double](repeating: 0, count: models)
        var curvature = [Double](repeating: 0, count: models * models)
        for _ in 0..<iterations {
            derivatives(theta, wins: wins, models: models, prior: prior, centres: centres, gradient: &gradient, curvature: &curvature)
            guard var step = solve(curvature, gradient, models: models) else { break }
            // Halve the step until the likelihood does not fall.
            var candidate = theta
            var accepted = false
            for _ in 0..<30 {
                for i in 0..<models { candidate[i] = theta[i] + step[i] }
                let value = logLikelihood(candidate, wins: wins, models: models, prior: prior, centres: centres)
                if value >= likelihood {
                    likelihood = value
                    accepted = true
                    break
                }
                for i in 0..<models { step[i] *= 0.5 }
            }
            guard accepted else { break }
            theta = candidate
            if step.reduce(0, { max($0, abs($1)) }) < tolerance { break }
        }
        return theta
    }

    /// The penalised log-likelihood's gradient and negated Hessian at θ (positive definite thanks to the prior).
    static func derivatives(
        _ theta: [Double], wins: [Double], models: Int, prior: Double, centres: [Double]?, gradient: inout [Double], curvature: inout [Double]
    ) {
        for i in 0..<models {
            let s = sigmoid(theta[i] - (centres?[i] ?? 0))
            gradient[i] = prior * (0.5 - s)
            curvature[i * models + i] = prior * s * (1 - s)
        }
        for i in 0..<models {
            for j in (i + 1)..<models {
                let games = wins[i * models + j] + wins[j * models + i]
                curvature[i * models + j] = 0
                curvature[j * models + i] = 0
                guard games > 0 else { continue }
                let p = sigmoid(theta[i] - theta[j])
                let excess = wins[i * models + j] - games * p
                gradient[i] += excess
                gradient[j] -= excess
                let weight = games * p * (1 - p)
                curvature[i * models + i] += weight
                curvature[j * models + j] += weight
                curvature[i * models + j] = -weight
                curvature[j * models + i] = -weight
            }
        }
    }

    /// `count` draws of θ from the Laplace approximation of the posterior at the fit `theta`:
    /// N(θ, (scale · H)⁻¹), H the negated Hessian there. `scale` turns weighted wins into
    /// evidence (an effective sample size per unit of weight); nil if H is not positive definite.
    public static func posteriorDraws(
        _ theta: [Double], wins: [Double], models: Int, prior: Double, centres: [Double]? = nil, scale: Double, count: Int,
        generator: inout SplitMix64
    ) -> [[Double]]? {
        var gradient = [Double](repeating: 0, count: models)
        var precision = [Double](repeating: 0, count: models * models)
        derivatives(theta, wins: wins, models: models, prior: prior, centres: centres, gradient: &gradient, curvature: &precision)
        for index in precision.indices { precision[index] *= scale }
        var order = Int32(models)
        var info: Int32 = 0
        var lower = CChar(UInt8(ascii: "L"))
        dpotrf_(&lower, &order, &precision, &order, &info)
        guard info == 0 else { return nil }
        // With H = L Lᵀ, x solving Lᵀ x = z for z ~ N(0, I) has covariance H⁻¹. Column-major: one column per draw.
        var noise = (0..<models * count).map { _ in Double(generator.gaussian()) }
        var columns = Int32(count)
        var transpose = CChar(UInt8(ascii: "T"))
        var nonUnit = CChar(UInt8(ascii: "N"))
        dtrtrs_(&lower, &transpose, &nonUnit, &order, &columns, precision, &order, &noise, &order, &info)
        guard info == 0 else { return nil }
        return (0..<count).map { draw in (0..<models).map { theta[$0] + noise[draw * models + $0] } }
    }

    /// P(a beats b) from log-strengths.
    public static func winProbability(_ theta: [Double], _ a: Int, _ b: Int) -> Double {
        1 / (1 + exp(theta[b] - theta[a]))
    }

    static func logLikelihood(_ theta: [Double], wins: [Double], models: Int, prior: Double, centres: [Double]?) -> Double {
        var total = 0.0
        for i in 0..<models {
            let offset = theta[i] - (centres?[i] ?? 0)
            total += prior / 2 * (logSigmoid(offset) + logSigmoid(-offset))
            for j in 0..<models where j != i && wins[i * models + j] > 0 {
                total += wins[i * models + j] * logSigmoid(theta[i] - theta[j])
            }
        }
        return total
    }

    /// Solves `matrix` · x = `vector` for a symmetric positive-definite matrix (LAPACK dposv).
    static func solve(_ matrix: [Double], _ vector: [Double], models: Int) -> [Double]? {
        var a = matrix
        var b = vector
        var order = Int32(models)
        var leadingA = order
        var leadingB = order
        var columns: Int32 = 1
        var info: Int32 = 0
        var lower = CChar(UInt8(ascii: "L"))
        dposv_(&lower, &order, &columns, &a, &leadingA, &b, &leadingB, &info)
        return info == 0 ? b : nil
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

    /// log σ(x), without overflow for large |x|.
    static func logSigmoid(_ x: Double) -> Double { x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)) }
}
