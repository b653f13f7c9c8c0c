import Fleet
import RouterEngine
import RouterVocabulary
import TextEncoder

/// What the daemon counts, as domain values at one moment: the engine's `StatsSnapshot`, the
/// server's counters, and the counters of the serving generation's encoders and files. `/metrics`
/// renders it (RouterMetrics) without going through the wire's `stats` reply.
public struct DaemonSnapshot: Sendable {
    public struct Encoder: Sendable {
        public var cache: EmbeddingCache.Counters
        public var batcher: EmbeddingBatcher<SentenceEncoder>.Counters
        public var kernel: String
        public var precision: String
    }

    public var engine: StatsSnapshot
    public var server: ServerCounters.Snapshot
    public var uptimeSeconds: Double
    public var generation: UInt64
    /// Each router's threshold, for the threshold policies.
    public var thresholds: [String: Double]
    public var encoders: [String: Encoder]
    public var decisionLog: DecisionLogCounters?
    public var feedback: FeedbackStore.Counters?
    /// Decisions remembered so feedback can name them.
    public var rememberedDecisions: Int
    /// The fleet's side of this daemon, with `fleet:`.
    public var fleet: FleetStatus?
}

extension DaemonService {
    /// What a metrics scrape reports, taken now.
    public func snapshot() -> DaemonSnapshot {
        let serving = dispatcher.reloader.current
        let engine = dispatcher.engine
        return DaemonSnapshot(
            engine: engine.statsSnapshot(on: serving.generation), server: dispatcher.counters.snapshot, uptimeSeconds: engine.uptimeSeconds,
            generation: serving.generation.number, thresholds: serving.generation.routers.compactMapValues(\.threshold),
            encoders: serving.generation.encoders.mapValues {
                DaemonSnapshot.Encoder(
                    cache: $0.cache.counters, batcher: $0.batcher.counters, kernel: $0.encoder.kernel.rawValue,
                    precision: $0.encoder.precision.rawValue)
            },
            decisionLog: serving.decisionLog?.counters, feedback: serving.feedback?.counters, rememberedDecisions: engine.rememberedDecisions.count,
            fleet: serving.fleet?.status)
    }
}
