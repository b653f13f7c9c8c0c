import Foundation
import RouterConfig
import Synchronization

/// What the budget controller reports in `stats`.
public struct BudgetSnapshot: Sendable, Hashable {
    /// "mean_cost" (USD per request) or "share" (of ``model``).
    public var metric: String
    public var model: String?
    public var target: Double
    /// The metric over the decisions in the window; nil before the first.
    public var achieved: Double?
    /// The λ now in force.
    public var lambda: Double
    /// Decisions in the window (up to its size).
    public var decisions: Int
    public var window: Int
    /// With a fleet that shares budgets: the metric over the fleet's hosts (each host's window
    /// weighted by its decision rate), and how many other hosts it counts; nil otherwise.
    public var fleetAchieved: Double?
    public var fleetHosts: Int?
}

/// One host's budget as the fleet shares it: how fast it decides, what its window achieved, and
/// what its recent predictions would achieve under each λ of ``BudgetController/curveLambdas``.
public struct BudgetCurve: Sendable, Hashable {
    /// Decisions per second: the host's weight in the fleet's aggregate.
    public var rate: Double
    public var achieved: Double
    /// The metric at each of ``BudgetController/curveLambdas``.
    public var points: [Double]

    public init(rate: Double, achieved: Double, points: [Double]) {
        self.rate = rate
        self.achieved = achieved
        self.points = points
    }

    /// The metric at `lambda`, linear in log λ between the grid's points.
    func value(at lambda: Double) -> Double {
        guard points.count == BudgetController.curveLambdas.count else { return achieved }
        guard lambda > BudgetController.curveLambdas[1] else { return lambda <= 0 ? points[0] : points[1] }
        let position = log2(lambda) - BudgetController.curveLowestExponent
        let below = Int(position.rounded(.down)) + 1
        guard below + 1 < points.count else { return points[points.count - 1] }
        let fraction = position - position.rounded(.down)
        return points[below] + (points[below + 1] - points[below]) * fraction
    }
}

/// A decision's place in a budget window, to settle its real cost.
public struct BudgetTicket: Sendable, Hashable {
    let number: UInt64
    let slot: Int
}

/// Holds a budget online: λ in "quality − λ × cost" is re-fitted every few decisions so
/// that, over the last `window` prompts, the policy would have met the target.
///
/// The fit replays the window's predictions (each prompt's qualities and costs) under
/// trial values of λ and bisects on λ until the replayed metric meets the target, so it
/// follows the live score distribution as the mix of prompts drifts. That alone lags a
/// drift by half a window and leaves the window's sampling noise; so the target of each
/// fit is also corrected by what the window actually achieved: after overspending it aims
/// ``feedbackGain`` times the excess below the target, and the other way round, which pulls
/// the window's achieved value back within a few dozen decisions. A mean cost falls
/// as λ rises; so does the share of any candidate dearer than the rest, and the cheapest
/// candidate's share rises: the bisection finds the direction from the two ends.
/// `achieved` is measured on the decisions actually made, sessions included.
public final class BudgetController: Sendable {
    public let budget: Budget
    /// How strongly a fit corrects the window's error (see the type's comment): the window's
    /// error decays with a time constant of about window / gain decisions. Chosen on the drifting
    /// replay of training prompts in BudgetTests (gains 3, 4, 6, 8, 12; the smallest worst error
    /// over both targets: docs/RESULTS.md, "How every shipped setting was chosen").
    static let feedbackGain = 8.0
    /// The fewest recent decisions a fit replays.
    static let minimumFitRows = 64
    /// The candidate whose share is the target, for a share budget.
    private let targetIndex: Int?
    private let width: Int
    private let state: Mutex<State>

    private struct State {
        /// Ring of the window's predictions: `width` qualities and costs per prompt.
        var qualities: [Double] = []
        var costs: [Double] = []
        /// Ring of the decisions made: their cost and whether they chose the target model.
        var chosenCost: [Double] = []
        var chosenTarget: [Bool] = []
        var next = 0
        var filled = 0
        var sinceFit = 0
        var lambda = 0.0
        var fitting = false
        /// Decisions recorded since the controller was made: a decision's number names its slot
        /// for as long as the window still holds it.
        var recorded: UInt64 = 0
        /// The fleet's other hosts, and this host's own rate in the same units; empty alone.
        var peers: [BudgetCurve] = []
        var localRate = 0.0
    }

    /// The λ at which a host's curve is shared: 0, then 2⁻²⁰ to 2⁶⁰ by doublings, which spans
    /// what a share or a mean cost in USD needs (a mean cost's λ is near 10⁶ per USD).
    public static let curveLambdas: [Double] = [0] + (0...80).map { exp2(Double($0) + curveLowestExponent) }
    static let curveLowestExponent = -20.0

    init(budget: Budget, candidates: [String]) {
        self.budget = budget
        width = candidates.count
        if case .share(let model, _) = budget.target { targetIndex = candidates.firstIndex(of: model) } else { targetIndex = nil }
        var initial = State()
        initial.qualities = .init(repeating: 0, count: budget.window * width)
        initial.costs = .init(repeating: 0, count: budget.window * width)
        initial.chosenCost = .init(repeating: 0, count: budget.window)
        initial.chosenTarget = .init(repeating: false, count: budget.window)
        state = Mutex(initial)
    }

    /// Whether a reload with `budget` over `candidates` may keep this controller and its window.
    func fits(_ budget: Budget, candidates: [String]) -> Bool {
        budget == self.budget && candidates.count == width
            && (targetIndex == nil
                || { if case .share(let model, _) = budget.target { candidates.firstIndex(of: model) == targetIndex } else { false } }())
    }

    /// The λ to decide with now.
    public var lambda: Double { state.withLock { $0.lambda } }

    /// Decisions recorded since the controller was made: the fleet measures this host's rate by it.
    public var recorded: UInt64 { state.withLock { $0.recorded } }

    /// A string that two hosts' budgets share only if one fleet aggregate can hold both: the
    /// metric, its model and its target.
    public var fleetKey: String {
        switch budget.target {
        case .meanCost(let cost): "mean_cost:\(cost)"
        case .share(let model, let fraction): "share:\(model):\(fraction)"
        }
    }

    /// This host's curve for the fleet, with `rate` its decisions per second: the window's
    /// achieved metric, and the replay of its recent predictions under each shared λ.
    public func curve(rate: Double) -> BudgetCurve {
        let (qualities, costs, count, achieved) = state.withLock { state in
            let (qualities, costs, count) = Self.recentRows(state, width: width, window: budget.window)
            return (qualities, costs, count, Self.achieved(state, share: targetIndex != nil))
        }
        let points = count == 0 ? [] : Self.curveLambdas.map { replay($0, qualities: qualities, costs: costs, count: count) }
        return BudgetCurve(rate: rate, achieved: achieved, points: points)
    }

    /// The fleet's other hosts as last read (empty when alone or when the fleet is out of
    /// reach: the controller then holds its own traffic to the target), and this host's rate.
    /// The next fit aims the fleet's rate-weighted aggregate at the target, under one λ.
    public func setFleet(peers: [BudgetCurve], localRate: Double) {
        let usable = peers.filter { $0.rate > 0 && $0.points.count == Self.curveLambdas.count }
        state.withLock {
            $0.peers = usable
            $0.localRate = localRate
        }
    }

    private var targetValue: Double {
        switch budget.target {
        case .meanCost(let cost): cost
        case .share(_, let fraction): fraction
        }
    }

    /// Records one decision's predictions and choice, and re-fits λ when it is due. Returns the
    /// decision's ticket, for ``settle(_:cost:servedBy:)`` once its real cost is known.
    @discardableResult
    func record(qualities: [Double], costs: [Double], chosen: Int) -> BudgetTicket {
        precondition(qualities.count == width && costs.count == width)
        var ticket = BudgetTicket(number: 0, slot: 0)
        let due: (qualities: [Double], costs: [Double], count: Int, achieved: Double, fleet: Fleet?)? = state.withLock { state in
            let slot = state.next
            state.recorded += 1
            ticket = BudgetTicket(number: state.recorded, slot: slot)
            for column in 0..<width {
                state.qualities[slot * width + column] = qualities[column]
                state.costs[slot * width + column] = costs[column]
            }
            state.chosenCost[slot] = costs[chosen]
            state.chosenTarget[slot] = chosen == targetIndex
            state.next = (slot + 1) % budget.window
            state.filled = min(state.filled + 1, budget.window)
            state.sinceFit += 1
            // The first fits come early, so a new controller leaves λ = 0 after a few decisions.
            let interval = state.filled < budget.updateEvery * 4 ? max(1, budget.updateEvery / 4) : budget.updateEvery
            guard state.sinceFit >= interval, !state.fitting else { return nil }
            state.sinceFit = 0
            state.fitting = true
            let (qualities, costs, recent) = Self.recentRows(state, width: width, window: budget.window)
            let achieved = Self.achieved(state, share: targetIndex != nil)
            let fleet = Fleet(peers: state.peers, localRate: state.localRate)
            return (qualities, costs, recent, fleet?.aggregate(local: achieved) ?? achieved, fleet)
        }
        // The fit runs outside the lock: decisions keep using the previous λ meanwhile.
        guard let due else { return ticket }
        let goal = targetValue
        var aim = goal + Self.feedbackGain * (goal - due.achieved)
        aim = targetIndex == nil ? min(max(aim, 0), 2 * goal) : min(max(aim, 0), 1)
        let lambda = fit(qualities: due.qualities, costs: due.costs, count: due.count, target: aim, fleet: due.fleet)
        state.withLock {
            $0.lambda = lambda
            $0.fitting = false
        }
        return ticket
    }

    /// The rows a fit replays: the most recent quarter of the window (under drift the whole window
    /// would describe prompts half a window old; the feedback on the achieved metric covers the
    /// whole window), at least ``minimumFitRows``.
    private static func recentRows(_ state: State, width: Int, window: Int) -> (qualities: [Double], costs: [Double], count: Int) {
        let recent = min(state.filled, max(minimumFitRows, window / 4))
        var qualities = [Double](repeating: 0, count: recent * width)
        var costs = [Double](repeating: 0, count: recent * width)
        for row in 0..<recent {
            let slot = (state.next - recent + row + window) % window
            for column in 0..<width {
                qualities[row * width + column] = state.qualities[slot * width + column]
                costs[row * width + column] = state.costs[slot * width + column]
            }
        }
        return (qualities, costs, recent)
    }

    /// The other hosts' curves and weights, as one fit sees them.
    struct Fleet {
        var peers: [BudgetCurve]
        var localWeight: Double
        var total: Double

        /// Nil when there are no peers: the controller is alone.
        init?(peers: [BudgetCurve], localRate: Double) {
            guard !peers.isEmpty else { return nil }
            self.peers = peers
            localWeight = max(localRate, 0)
            total = localWeight + peers.reduce(0) { $0 + $1.rate }
        }

        func aggregate(local: Double) -> Double {
            (localWeight * local + peers.reduce(0) { $0 + $1.rate * $1.achieved }) / total
        }

        func aggregate(local: Double, at lambda: Double) -> Double {
            (localWeight * local + peers.reduce(0) { $0 + $1.rate * $1.value(at: lambda) }) / total
        }
    }

    /// Whether the window still holds the decision `ticket` names.
    private static func holds(_ state: State, _ ticket: BudgetTicket, window: Int) -> Bool {
        ticket.number > 0 && ticket.number <= state.recorded && state.recorded - ticket.number < UInt64(window)
    }

    /// Replaces a decision's expected cost with what it really cost, fallbacks included, and its
    /// choice with the candidate that served it (`servedBy`, an index into the candidates; nil
    /// when none did), so the window's achieved metric, and through it λ, follows real spend.
    func settle(_ ticket: BudgetTicket, cost: Double, servedBy: Int?) {
        state.withLock { state in
            guard Self.holds(state, ticket, window: budget.window) else { return }
            state.chosenCost[ticket.slot] = cost
            state.chosenTarget[ticket.slot] = servedBy != nil && servedBy == targetIndex
        }
    }

    /// Whether the budget can pay for a fallback to candidate `index` expected to cost `cost` on
    /// top of `spent` (what the decision has cost so far): the window's achieved metric with the
    /// decision counted at that price, or on that candidate, must stay within the target. Before
    /// the window holds ``minimumFitRows`` decisions there is too little to judge, and the
    /// fallback is allowed.
    func allowsFallback(_ ticket: BudgetTicket, to index: Int, cost: Double, spent: Double) -> Bool {
        state.withLock { state in
            guard Self.holds(state, ticket, window: budget.window), state.filled >= Self.minimumFitRows else { return true }
            var trial = state
            if let targetIndex {
                // A share budget: only a fallback onto the target candidate moves the share.
                guard index == targetIndex, !state.chosenTarget[ticket.slot] else { return true }
                trial.chosenTarget[ticket.slot] = true
            } else {
                trial.chosenCost[ticket.slot] = spent + cost
                // A fallback no dearer than the decision's own choice spends nothing the choice did not.
                if spent + cost <= state.chosenCost[ticket.slot] { return true }
            }
            return Self.achieved(trial, share: targetIndex != nil) <= targetValue
        }
    }

    /// The metric the window would have shown under `lambda`.
    private func replay(_ lambda: Double, qualities: [Double], costs: [Double], count: Int) -> Double {
        guard count > 0 else { return 0 }
        var total = 0.0
        for row in 0..<count {
            let base = row * width
            let best = PolicyRule.bestUtility(
                qualities: qualities[base..<base + width], costs: costs[base..<base + width], lambda: lambda)
            if let targetIndex {
                if best == targetIndex { total += 1 }
            } else {
                total += costs[base + best]
            }
        }
        return total / Double(count)
    }

    /// The λ whose replay meets the target: bisection on log λ between λ = 0 and a λ at which
    /// price alone decides. With a fleet, the replay is of this host's rows and the other hosts'
    /// curves, weighted by their rates, so every host fits the one λ that holds the aggregate.
    private func fit(qualities: [Double], costs: [Double], count: Int, target: Double, fleet: Fleet?) -> Double {
        func replay(_ lambda: Double, qualities: [Double], costs: [Double], count: Int) -> Double {
            let local = self.replay(lambda, qualities: qualities, costs: costs, count: count)
            return fleet?.aggregate(local: local, at: lambda) ?? local
        }
        let atZero = replay(0, qualities: qualities, costs: costs, count: count)
        if abs(atZero - target) <= 1e-12 { return 0 }
        // Cost differences are tiny next to quality differences: the λ that matters can be
        // ~10⁶ per USD. Find an upper end by growing λ until the metric crosses the target.
        // Which way the metric moves: at a huge λ price alone decides.
        let rising = replay(1e15, qualities: qualities, costs: costs, count: count) > atZero
        var high = 1.0
        var atHigh = replay(high, qualities: qualities, costs: costs, count: count)
        func beyond(_ value: Double) -> Bool { rising ? value >= target : value <= target }
        if beyond(atZero) { return 0 }
        var low = 0.0
        var steps = 0
        while !beyond(atHigh), steps < 60 {
            low = high
            high *= 4
            atHigh = replay(high, qualities: qualities, costs: costs, count: count)
            steps += 1
        }
        guard beyond(atHigh) else { return high }  // unreachable target: price alone decides
        for _ in 0..<40 {
            let middle = low == 0 ? high / 2 : (low * high).squareRoot()
            if beyond(replay(middle, qualities: qualities, costs: costs, count: count)) { high = middle } else { low = middle }
            if high - low <= high * 1e-4 { break }
        }
        return high
    }

    /// The metric over the decisions in the window.
    private static func achieved(_ state: State, share: Bool) -> Double {
        guard state.filled > 0 else { return 0 }
        return share
            ? Double(state.chosenTarget[0..<state.filled].filter { $0 }.count) / Double(state.filled)
            : state.chosenCost[0..<state.filled].reduce(0, +) / Double(state.filled)
    }

    func snapshot() -> BudgetSnapshot {
        state.withLock { state in
            let achieved: Double? = state.filled > 0 ? Self.achieved(state, share: targetIndex != nil) : nil
            var model: String?
            if case .share(let name, _) = budget.target { model = name }
            let fleet = Fleet(peers: state.peers, localRate: state.localRate)
            return BudgetSnapshot(
                metric: targetIndex == nil ? "mean_cost" : "share", model: model, target: targetValue, achieved: achieved, lambda: state.lambda,
                decisions: state.filled, window: budget.window, fleetAchieved: fleet.map { $0.aggregate(local: achieved ?? 0) },
                fleetHosts: fleet.map { $0.peers.count })
        }
    }
}
