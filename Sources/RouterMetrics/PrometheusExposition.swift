import Fleet
import Prometheus
import RouterDaemon
import RouterEngine
import RouterProtocol
import TextEncoder

/// The daemon's counters in Prometheus' text format.
///
/// The counters are those `stats` shows, read from the daemon's domain snapshot (the engine's
/// `StatsSnapshot` and the server's and files' counters), not from the wire's reply; each scrape
/// copies a snapshot into a fresh registry, which writes the exposition format (types, label
/// escaping) as the library defines it.
public enum PrometheusExposition {
    public static func render(_ snapshot: DaemonSnapshot) -> [UInt8] {
        let stats = snapshot.engine
        let server = snapshot.server
        let registry = PrometheusCollectorRegistry()
        // Names are routerd_<name>_<unit>, e.g. routerd_decisions_total.
        func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
            let parts = name.split(separator: "_")
            return MetricNameDescriptor(
                namespace: "routerd", metricName: parts.dropLast().joined(separator: "_"), unitName: String(parts.last!), helpText: help)
        }
        func counter(_ name: String, _ help: String, _ value: UInt64, _ labels: [(String, String)] = []) {
            registry.makeCounter(descriptor: descriptor(name, help), labels: labels).increment(by: Int64(clamping: value))
        }
        func gauge(_ name: String, _ help: String, _ value: Double, _ labels: [(String, String)] = []) {
            registry.makeGauge(descriptor: descriptor(name, help), labels: labels).set(to: value)
        }
        // `stats` names its quantiles p50 and p99; Prometheus labels them 0.5 and 0.99.
        func quantileLabel(_ quantile: String) -> String { quantile == "p50" ? "0.5" : "0.99" }
        gauge("uptime_seconds", "Seconds since routerd started.", snapshot.uptimeSeconds)
        gauge("config_generation", "The configuration generation serving new requests.", Double(snapshot.generation))
        gauge("connections_open", "Client connections open now.", Double(server.connectionsOpen))
        counter("connections_total", "Client connections accepted.", server.connectionsTotal)
        counter("connections_rejected_total", "Connections refused over limits.max_connections.", server.connectionsRejected)
        counter("reloads_total", "Reloads and sets that took effect.", stats.reloads, [("outcome", "ok")])
        counter("reloads_total", "Reloads and sets that took effect.", stats.reloadFailures, [("outcome", "rejected")])
        for (op, count) in server.requests.map({ ($0.key.rawValue, $0.value) }).sorted(by: { $0.0 < $1.0 }) {
            counter("requests_total", "Requests answered, by op.", count, [("op", op)])
        }
        for (code, count) in server.errors.map({ ($0.key.rawValue, $0.value) }).sorted(by: { $0.0 < $1.0 }) {
            counter("errors_total", "Error responses, by code.", count, [("code", code)])
        }
        for (kind, traffic) in [("router", stats.gatewayRouters), ("model", stats.gatewayModels)] {
            for (name, activity) in traffic.sorted(by: { $0.key < $1.key }) {
                let label = (kind, name)
                let served = activity.requests - activity.failed
                counter(
                    "gateway_requests_total", "Gateway requests answered, by router or serving model, and outcome.", served,
                    [label, ("outcome", "served")])
                counter(
                    "gateway_requests_total", "Gateway requests answered, by router or serving model, and outcome.", activity.failed,
                    [label, ("outcome", "failed")])
                counter("gateway_attempts_total", "Upstream calls by the gateway, retries and fallbacks included.", activity.attempts, [label])
                counter("gateway_fallbacks_total", "Gateway requests served by another model than the first called.", activity.fallbacks, [label])
                for (errorClass, count) in activity.upstreamErrors.sorted(by: { $0.key < $1.key }) {
                    counter("gateway_upstream_errors_total", "Failed upstream calls, by class.", count, [label, ("class", errorClass)])
                }
                counter("gateway_tokens_total", "Tokens of served answers, from their usage.", activity.promptTokens, [label, ("kind", "prompt")])
                counter(
                    "gateway_tokens_total", "Tokens of served answers, from their usage.", activity.completionTokens, [label, ("kind", "completion")])
                gauge("gateway_spend_usd", "USD spent on served answers since start, from usage at the catalogue's prices.", activity.spend, [label])
                gauge(
                    "gateway_first_byte_seconds_sum", "Seconds to the first byte to the client, summed over served requests.",
                    activity.firstByteSeconds, [label])
                gauge("gateway_request_seconds_sum", "Seconds from arrival to end, summed over served requests.", activity.totalSeconds, [label])
                for (quantile, value) in activity.firstByteQuantiles.sorted(by: { $0.key < $1.key }) {
                    gauge(
                        "gateway_first_byte_seconds", "Seconds to the first byte to the client over the last 1024 served requests.", value,
                        [label, ("quantile", quantileLabel(quantile))])
                }
                for (quantile, value) in activity.totalQuantiles.sorted(by: { $0.key < $1.key }) {
                    gauge(
                        "gateway_request_seconds", "Seconds from arrival to end over the last 1024 served requests.", value,
                        [label, ("quantile", quantileLabel(quantile))])
                }
            }
        }
        for (name, router) in stats.routers.sorted(by: { $0.key < $1.key }) {
            let label = ("router", name)
            counter("decisions_total", "Route decisions, by router and tier.", router.strong, [label, ("tier", "strong")])
            counter("decisions_total", "Route decisions, by router and tier.", router.weak, [label, ("tier", "weak")])
            counter("scored_prompts_total", "Prompts scored by the score op.", router.scored, [label])
            counter("plugin_errors_total", "Plugin failures while scoring.", router.errors, [label])
            counter("fallbacks_total", "Decisions that took the plugin's fallback.", router.fallbacks, [label])
            counter("feedback_outcomes_total", "Feedback outcomes recorded, by router.", router.outcomes, [label, ("kind", "all")])
            counter("feedback_outcomes_total", "Feedback outcomes recorded, by router.", router.failedOutcomes, [label, ("kind", "failed")])
            if router.drawn > 0 {
                counter(
                    "explore_draws_total", "Decisions of a router that explores.", router.drawn, [label])
                counter("explored_decisions_total", "Decisions that explored: chose other than the policy's choice.", router.explored, [label])
                gauge(
                    "explore_extra_cost_usd", "Expected USD the explored decisions cost above the policy's choices, since start.",
                    router.exploreExtraCost, [label])
            }
            for (shadow, activity) in router.shadows.sorted(by: { $0.key < $1.key }) {
                let labels = [label, ("shadow", shadow)]
                counter("shadow_decisions_total", "Decisions a shadow router made on a live router's prompts.", activity.decisions, labels)
                counter("shadow_agreements_total", "Shadow decisions that chose the live decision's model.", activity.agreements, labels)
                counter("shadow_errors_total", "Shadow decisions that failed.", activity.errors, labels)
            }
            if router.judged > 0 {
                counter("familiarity_judged_total", "Decisions whose prompt's familiarity the router judged (novelty:).", router.judged, [label])
                counter("novel_decisions_total", "Decisions on prompts less familiar than the router's novelty threshold.", router.novel, [label])
            }
            if !router.shadows.isEmpty || router.shadowsDropped > 0 {
                counter("shadow_dropped_total", "Live decisions the shadows had no room to decide.", router.shadowsDropped, [label])
            }
            for (event, count) in router.events.sorted(by: { $0.key < $1.key }) {
                counter("plugin_events_total", "Events counted by plugins.", count, [label, ("event", event)])
            }
            for (quantile, value) in router.latencyMicroseconds.sorted(by: { $0.key < $1.key }) {
                gauge(
                    "decision_latency_microseconds", "Decision latency inside routerd over the last 1024 decisions.", value,
                    [label, ("quantile", quantileLabel(quantile))])
            }
            if let threshold = snapshot.thresholds[name] {
                gauge("router_threshold", "The threshold each router decides with.", threshold, [label])
            }
            for (model, count) in router.models.sorted(by: { $0.key < $1.key }) {
                counter("model_decisions_total", "Route decisions, by router and the model chosen.", count, [label, ("model", model)])
            }
            if let budget = router.budget {
                let metric = ("metric", budget.metric)
                gauge("budget_target", "A budget policy's target: mean cost per request (USD) or a model's share.", budget.target, [label, metric])
                if let achieved = budget.achieved {
                    gauge("budget_achieved", "A budget policy's metric over the decisions in its window.", achieved, [label, metric])
                }
                if let fleetAchieved = budget.fleetAchieved {
                    gauge(
                        "budget_fleet_achieved", "A fleet-shared budget's metric over the fleet's hosts, weighted by their decision rates.",
                        fleetAchieved, [label, metric])
                }
                gauge("budget_lambda", "The λ a budget policy decides with now.", budget.lambda, [label])
            }
        }
        gauge("sessions_remembered", "Sessions whose model is remembered (session affinity).", Double(stats.sessions))
        if let log = snapshot.decisionLog {
            counter("decision_log_lines_total", "Decisions written to the decision log.", log.lines)
            counter("decision_log_write_failures_total", "Decisions the decision log could not write (routing went on).", log.failedWrites)
        }
        if let feedback = snapshot.feedback {
            counter("feedback_rows_total", "Feedback rows made durable in the feedback store.", feedback.rows)
            counter("feedback_syncs_total", "fdatasync calls of the feedback store; each acknowledges a batch of rows.", feedback.syncs)
            counter("feedback_write_failures_total", "Feedback rows that could not be written; their senders got an error.", feedback.failedWrites)
            gauge(
                "feedback_decisions_remembered", "Decisions remembered so feedback can name them by decision_id.",
                Double(snapshot.rememberedDecisions))
        }
        if let fleet = snapshot.fleet {
            gauge("fleet_connected", "1 while the shipper's connection to the fleet's database is up, else 0.", fleet.connected ? 1 : 0)
            gauge("fleet_outbox_outcomes", "Outcomes acknowledged here and not yet in the fleet's database.", Double(fleet.outboxDepth))
            counter("fleet_shipped_outcomes_total", "Outcomes this daemon shipped to the fleet's database.", fleet.shipped)
            counter(
                "fleet_received_outcomes_total",
                "Other hosts' outcomes handed to this daemon's learner, or skipped (no router here learns from them).",
                fleet.received, [("kind", "learned")])
            counter(
                "fleet_received_outcomes_total",
                "Other hosts' outcomes handed to this daemon's learner, or skipped (no router here learns from them).",
                fleet.skipped, [("kind", "skipped")])
            for (quantile, milliseconds) in [("0.5", fleet.lagP50Milliseconds), ("0.99", fleet.lagP99Milliseconds)] {
                if let milliseconds {
                    gauge(
                        "fleet_replication_lag_seconds",
                        "From acknowledgement on another host to this daemon's learner, over its last 1,024 outcomes.",
                        milliseconds / 1000, [("quantile", quantile)])
                }
            }
            counter("fleet_outbox_compactions_total", "Times the outbox was rewritten without its shipped lines.", fleet.compactions)
            counter("fleet_budget_exchanges_total", "Budget exchanges with the fleet's database (share: budgets).", fleet.budgetExchanges)
            gauge("fleet_budget_hosts", "The most other hosts any fleet-shared budget counts now.", Double(fleet.budgetPeers))
            counter("fleet_sessions_shipped_total", "Session decisions this daemon shipped to the fleet's database.", fleet.sessionsShipped)
            counter("fleet_sessions_received_total", "Other hosts' session decisions merged into this daemon's sessions.", fleet.sessionsReceived)
            gauge(
                "fleet_last_attempt_failed", "1 while the fleet's last attempt failed (its message is in stats' fleet.last_error), else 0.",
                fleet.lastError == nil ? 0 : 1)
        }
        for (name, encoder) in snapshot.encoders.sorted(by: { $0.key < $1.key }) {
            let label = ("encoder", name)
            counter("embedding_cache_hits_total", "Embedding cache hits.", encoder.cache.hits, [label])
            counter("embedding_cache_misses_total", "Embedding cache misses.", encoder.cache.misses, [label])
            gauge("embedding_cache_entries", "Embeddings cached now.", Double(encoder.cache.entries), [label])
            counter("encoder_batches_total", "Passes through the encoder; each embeds one batch.", encoder.batcher.batches, [label])
            counter("encoder_batched_texts_total", "Texts embedded in batches.", encoder.batcher.texts, [label])
            counter(
                "encoder_batched_requests_total", "Requests served by batches; above batches, requests shared passes.", encoder.batcher.calls,
                [label])
            gauge(
                "encoder_info", "1 for each encoder, labelled with its linear layers' kernel and precision.", 1,
                [label, ("kernel", encoder.kernel), ("precision", encoder.precision)])
        }
        return registry.emitToBuffer()
    }
}
