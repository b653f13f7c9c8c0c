import Foundation
import RouterConfig
import StableHash
import Testing

@testable import RouterEngine

/// Budget controllers sharing curves, as a fleet's hosts do through its database, in-process: two
/// hosts, one whose prompts drift from easy to hard and one whose prompts stay easy.
@Suite struct FleetBudgetTests {
    static let candidates = ["strong", "weak"]
    static let costs = [0.01, 0.001]
    static let target = 0.3

    /// The quality gap of prompt `index` of `count` on a host: easy prompts gain little from the
    /// strong model, hard ones much; a drifting host's prompts turn hard as the stream goes on.
    static func qualities(host: UInt64, index: Int, count: Int, drifting: Bool) -> [Double] {
        let draw = SplitMix64.mix(host &* 1_000_003 &+ UInt64(index))
        let uniform = Double(draw >> 11) / Double(1 << 53)
        let hard = drifting && Double(SplitMix64.mix(draw) >> 11) / Double(1 << 53) < Double(index) / Double(count)
        let gap = hard ? 0.1 + 0.4 * uniform : 0.2 * uniform
        return [0.5 + gap / 2, 0.5 - gap / 2]
    }

    struct Outcome {
        /// The share of the strong model over both hosts' windows, after each checkpoint.
        var aggregates: [Double] = []
        var localShares: [Double] = []
        var lambdas: [Double] = []
        /// Quality summed over every decision of both hosts.
        var quality = 0.0
    }

    /// Both hosts decide in turn; every `exchangeEvery` decisions each reads the other's curve,
    /// as the fleet's budget thread does every interval (or never, when `shared` is false).
    static func run(shared: Bool, count: Int = 4000, window: Int = 1000, exchangeEvery: Int = 40) -> Outcome {
        let budget = Budget(target: .share(model: "strong", fraction: target), window: window)
        let hosts = [BudgetController(budget: budget, candidates: candidates), BudgetController(budget: budget, candidates: candidates)]
        var chosen: [[Bool]] = [[], []]
        var outcome = Outcome()
        for index in 0..<count {
            for host in 0..<2 {
                let qualities = Self.qualities(host: UInt64(host), index: index, count: count, drifting: host == 0)
                let choice = PolicyRule.bestUtility(qualities: qualities, costs: costs, lambda: hosts[host].lambda)
                hosts[host].record(qualities: qualities, costs: costs, chosen: choice)
                chosen[host].append(choice == 0)
                outcome.quality += qualities[choice]
            }
            if shared, (index + 1) % exchangeEvery == 0 {
                // Equal traffic: equal rates.
                let curves = hosts.map { $0.curve(rate: 1) }
                hosts[0].setFleet(peers: [curves[1]], localRate: 1)
                hosts[1].setFleet(peers: [curves[0]], localRate: 1)
            }
            if index + 1 >= 2 * window, (index + 1) % 100 == 0 {
                let windows = chosen.map { $0.suffix(window) }
                outcome.aggregates.append(Double(windows.map { $0.filter { $0 }.count }.reduce(0, +)) / Double(2 * window))
                outcome.localShares = windows.map { Double($0.filter { $0 }.count) / Double(window) }
                outcome.lambdas = hosts.map(\.lambda)
            }
        }
        return outcome
    }

    @Test func theFleetsAggregateHoldsTheTargetUnderOneLambda() {
        let fleet = Self.run(shared: true)
        print("fleet: aggregate \(fleet.aggregates.min()!)...\(fleet.aggregates.max()!), local \(fleet.localShares), λ \(fleet.lambdas)")
        for (checkpoint, aggregate) in fleet.aggregates.enumerated() {
            #expect(abs(aggregate - Self.target) <= Self.target * 0.05, "checkpoint \(checkpoint): the fleet's share \(aggregate)")
        }
        // The drifting host's prompts gain more from the strong model, so it takes more of the
        // fleet's share, and the steady host less; alone, each would hold 30% of its own.
        #expect(fleet.localShares[0] > 0.4 && fleet.localShares[1] < 0.2, "local shares \(fleet.localShares)")
        // One λ: each host fits the same curves, read at most one exchange apart.
        #expect(abs(fleet.lambdas[0] - fleet.lambdas[1]) <= 0.2 * fleet.lambdas[0], "λ \(fleet.lambdas)")

        let alone = Self.run(shared: false)
        for share in alone.localShares { #expect(abs(share - Self.target) <= Self.target * 0.05, "alone: \(alone.localShares)") }
        // Spending where the gain is largest buys more quality for the same share.
        #expect(fleet.quality > alone.quality, "quality: fleet \(fleet.quality), alone \(alone.quality)")
    }

    /// A host that loses the fleet holds its own traffic to the target again.
    @Test func withoutPeersAControllerHoldsItsOwnTraffic() {
        let budget = Budget(target: .share(model: "strong", fraction: Self.target), window: 1000)
        let controller = BudgetController(budget: budget, candidates: Self.candidates)
        // A peer that takes all the share it can: this host alone would fall far below target.
        controller.setFleet(peers: [BudgetCurve(rate: 1, achieved: 0.6, points: BudgetController.curveLambdas.map { _ in 0.6 })], localRate: 1)
        var chosen: [Bool] = []
        for index in 0..<6000 {
            if index == 2000 { controller.setFleet(peers: [], localRate: 0) }
            let qualities = Self.qualities(host: 7, index: index, count: 6000, drifting: false)
            let choice = PolicyRule.bestUtility(qualities: qualities, costs: Self.costs, lambda: controller.lambda)
            controller.record(qualities: qualities, costs: Self.costs, chosen: choice)
            chosen.append(choice == 0)
        }
        let sharedShare = Double(chosen[1000..<2000].filter { $0 }.count) / 1000
        let aloneShare = Double(chosen.suffix(2000).filter { $0 }.count) / 2000
        // With the peer over target, this host spends next to nothing on the strong model.
        #expect(sharedShare < 0.1, "with the peer: \(sharedShare)")
        // Back near its own target. Not within 5%: on this synthetic stream, whose prompts differ
        // by one uniform gap alone, the controller rings by about ±0.04 around the target once
        // knocked far off it (seen over 500-decision windows); the real prompts of BudgetTests do not.
        #expect(abs(aloneShare - Self.target) <= 0.05, "alone again: \(aloneShare)")
        #expect(controller.snapshot().fleetAchieved == nil)
    }
}
