import Foundation
import RouterConfig
import RouterEngine
import RouterJSON
import Synchronization

/// The fleet's budgets (`fleet.share: [budgets]`).
///
/// Every budget interval, each host writes one row per budget router to `routerd_budgets`: its
/// decision rate, its window's achieved metric, and its curve (what its recent predictions would
/// achieve under each of ``BudgetController/curveLambdas``). It reads the other hosts' fresh rows
/// of the same budget and hands them to its controller, which then fits the one λ at which the
/// rate-weighted sum of every host's curve meets the target: each host spends where its own
/// prompts gain most, and the fleet's aggregate, not each host's own traffic, holds the target.
///
/// Rows older than ``staleAfter`` are not counted, and a host that cannot reach the database for
/// that long drops the others' curves: its controller then holds its own traffic to the target.
extension FleetSync {
    /// How long another host's budget row counts, and how long this host trusts the last exchange.
    var staleAfter: Double { max(5, settings.budgetIntervalSeconds * 5) }

    /// Seconds of decisions a host's rate is measured over.
    static let rateSpan = 10.0

    func budgetLoop() {
        var connection: PostgresConnection?
        // Per router: the controller sampled (a reload may replace it) and its recorded counts.
        var samples: [String: (controller: ObjectIdentifier, points: [(time: Double, recorded: UInt64)])] = [:]
        let clock = ContinuousClock()
        let origin = clock.now
        func seconds() -> Double { (clock.now - origin) / .seconds(1) }
        var lastExchange = seconds()
        var alone = true
        while !stopped {
            let now = seconds()
            let controllers = engine.budgetControllers
            var curves: [String: (controller: BudgetController, curve: BudgetCurve)] = [:]
            for (router, controller) in controllers {
                var sample = samples[router]
                if sample?.controller != ObjectIdentifier(controller) { sample = (ObjectIdentifier(controller), []) }
                sample!.points.append((now, controller.recorded))
                sample!.points.removeAll { now - $0.time > Self.rateSpan }
                samples[router] = sample
                let first = sample!.points[0]
                let span = now - first.time
                let rate = span > 0 ? Double(controller.recorded - first.recorded) / span : 0
                curves[router] = (controller, controller.curve(rate: rate))
            }
            samples = samples.filter { controllers[$0.key] != nil }
            do throws(FleetError) {
                if connection == nil { connection = try openClaimed("budgets", part: "budgets") }
                let peers = try exchange(curves.mapValues { ($0.controller.fleetKey, $0.curve) }, on: connection!)
                for (router, entry) in curves {
                    entry.controller.setFleet(peers: peers[router] ?? [], localRate: entry.curve.rate)
                }
                state.withLock {
                    $0.budgetExchanges += 1
                    $0.budgetPeers = peers.values.reduce(0) { max($0, $1.count) }
                }
                lastExchange = seconds()
                alone = false
            } catch {
                record(error: error.message, "budgets")
                connection = nil
                // Out of reach too long: each controller holds its own traffic to the target.
                if !alone, seconds() - lastExchange > staleAfter {
                    for entry in curves.values { entry.controller.setFleet(peers: [], localRate: 0) }
                    state.withLock { $0.budgetPeers = 0 }
                    alone = true
                }
            }
            waitForStop(settings.budgetIntervalSeconds)
        }
    }

    /// Writes this host's curves and reads the other hosts' fresh ones of the same budgets, by router.
    private func exchange(_ curves: [String: (key: String, curve: BudgetCurve)], on connection: PostgresConnection) throws(FleetError) -> [String:
        [BudgetCurve]]
    {
        let rows: [JSONValue] = curves.map { router, entry in
            .object([
                "router": .string(router), "budget": .string(entry.key), "rate": .number(entry.curve.rate),
                "achieved": .number(entry.curve.achieved.isFinite ? entry.curve.achieved : 0),
                "curve": .array(entry.curve.points.map { .number($0) }),
            ])
        }
        do {
            if !rows.isEmpty {
                try connection.execute(
                    """
                    INSERT INTO routerd_budgets (fleet, router, host, budget, rate, achieved, curve, updated_at)
                    SELECT $1, r.router, $2, r.budget, r.rate, r.achieved, r.curve, now()
                    FROM jsonb_to_recordset($3::jsonb) AS r(router text, budget text, rate double precision, achieved double precision, curve double precision[])
                    ON CONFLICT (fleet, router, host) DO UPDATE SET budget = EXCLUDED.budget, rate = EXCLUDED.rate,
                        achieved = EXCLUDED.achieved, curve = EXCLUDED.curve, updated_at = now()
                    """, [settings.name, settings.host, JSONValue.array(rows).text])
            }
            let found = try connection.execute(
                """
                SELECT router, budget, rate, achieved, curve::text FROM routerd_budgets
                WHERE fleet = $1 AND host <> $2 AND updated_at > now() - make_interval(secs => $3::double precision)
                """, [settings.name, settings.host, String(staleAfter)])
            var peers: [String: [BudgetCurve]] = [:]
            for row in found {
                guard row.count == 5, let router = row[0], let key = row[1], curves[router]?.key == key,
                    let rate = row[2].flatMap(Double.init), let achieved = row[3].flatMap(Double.init), let text = row[4]
                else { continue }
                let points = text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").compactMap { Double($0) }
                peers[router, default: []].append(BudgetCurve(rate: rate, achieved: achieved, points: points))
            }
            return peers
        } catch {
            throw FleetError(error.message)
        }
    }
}
