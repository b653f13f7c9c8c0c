import RouterConfig
import RouterEngine
import RouterProtocol
import RouterVocabulary
import TextEncoder

// The engine answers in domain values; these put them on the wire.

extension ProtocolError {
    /// The wire's error code for each engine error; the message is the engine's.
    init(_ error: EngineError) {
        let code: ErrorCode =
            switch error {
            case .unknownRouter: .unknownRouter
            case .plugin: .pluginError
            case .unknownEncoder, .noEncoders, .invalidSetting: .badField
            case .encoderNotNamed: .missingField
            case .reloadRejected: .reloadFailed
            case .unknownDecision: .unknownDecision
            case .unknownModel: .unknownModel
            case .reportForbidden: .forbidden
            case .tooLarge: .tooLarge
            }
        self.init(code, error.message)
    }
}

extension PolicyOverride {
    /// The request's override of its router's policy, if it makes one.
    init?(_ route: RouteRequest) {
        if let threshold = route.threshold {
            self = .threshold(threshold)
        } else if let lambda = route.lambda {
            self = .lambda(lambda)
        } else if let epsilon = route.cheapestWithin {
            self = .cheapestWithin(epsilon)
        } else if let value = route.modelNameValue {
            self = .knob(value)
        } else {
            return nil
        }
    }
}

extension LearningInfo {
    init(_ status: LearningStatus) {
        self.init(
            router: status.router, stateDirectory: status.stateDirectory, events: status.events, pending: status.pending,
            publishes: status.publishes, failures: status.failures, dropped: status.dropped,
            lastPublishMilliseconds: status.lastPublishMilliseconds, lastEmbedMilliseconds: status.lastEmbedMilliseconds, lastError: status.lastError,
            learned: status.details)
    }
}

extension FeedbackResult {
    /// The reply to a recorded outcome: the file its row went to is `battles` for an outcome
    /// against another model, else `quality`.
    public init(_ outcome: Outcome) {
        let recorded = if case .pairwise = outcome.value { "battles" } else { "quality" }
        self.init(decisionID: outcome.decisionID, router: outcome.router, model: outcome.model, recorded: recorded)
    }
}

extension FeedbackReport {
    /// The engine's report for a `feedback` request, as the socket and the gateway's `/v1/feedback` read it.
    public init(_ request: FeedbackRequest) {
        let subject: Subject =
            switch request.subject {
            case .decision(let id): .decision(id: id)
            case .prompt(let router, let text): .prompt(router: router, text: text)
            }
        let value: OutcomeValue =
            switch request.value {
            case .pairwise(let outcome, let against): .pairwise(outcome, against: against)
            case .pointwise(let quality): .pointwise(quality)
            case .failed: .failed
            }
        self.init(subject: subject, model: request.model, value: value)
    }
}

extension Decision {
    init(_ decision: RoutingDecision) {
        self.init(
            decisionID: decision.id, model: decision.model, tier: decision.tier.map { $0 == .strong ? .strong : .weak }, policy: decision.policy,
            score: decision.score,
            threshold: decision.threshold, lambda: decision.lambda, epsilon: decision.epsilon,
            candidates: decision.candidates.map { CandidateInfo(model: $0.model, quality: $0.quality, cost: $0.cost) },
            affinity: decision.affinity?.rawValue, router: decision.router, generation: decision.generation,
            elapsedMicroseconds: decision.elapsedMicroseconds, propensity: decision.propensity, explored: decision.explored,
            familiarity: decision.familiarity, novel: decision.novel)
    }
}

extension EmbedResult {
    init(_ embeddings: Embeddings, elapsedMicroseconds: Double) {
        self.init(
            encoder: embeddings.encoder, dimension: embeddings.dimension, embeddings: embeddings.vectors, tokens: embeddings.tokens,
            longText: embeddings.policy.rawValue, elapsedMicroseconds: elapsedMicroseconds)
    }
}

extension RoutersResult {
    init(_ generation: Generation) {
        self.init(
            generation: generation.number,
            routers: generation.routerNames.compactMap { generation.routers[$0] }.map { router in
                RouterInfo(
                    name: router.name, plugin: router.pluginName, pluginVersion: router.pluginVersion, policy: router.policy.name,
                    candidates: router.candidates.map(\.name), quality: router.qualityMeaning, threshold: router.threshold,
                    lambda: router.budget?.lambda ?? { if case .lambda(let value) = router.policy { value } else { nil } }(),
                    epsilon: { if case .cheapestWithin(let value) = router.policy { value } else { nil } }(),
                    strongModel: router.strongModel, weakModel: router.weakModel, encoder: router.encoder?.config.name,
                    strongFraction: router.strongFraction, generation: generation.number, details: router.details)
            })
    }
}

extension ReloadResult {
    init(_ outcome: ReloadOutcome) {
        self.init(
            generation: outcome.generation, previousGeneration: outcome.previousGeneration, routers: outcome.routers, reused: outcome.reused,
            dryRun: outcome.dryRun)
    }
}

extension SetResult {
    init(_ outcome: SetOutcome) {
        self.init(
            router: outcome.router, threshold: outcome.threshold, strongFraction: outcome.strongFraction, generation: outcome.generation,
            previousGeneration: outcome.previousGeneration)
    }
}

extension StatsResult {
    init(
        engine: StatsSnapshot, server: ServerCounters.Snapshot, decisionLog: DecisionLog?, feedback: FeedbackStore?,
        rememberedDecisions: (count: Int, bytes: Int), uptimeSeconds: Double, generation: Generation
    ) {
        self.init(
            uptimeSeconds: uptimeSeconds, generation: generation.number, connectionsOpen: server.connectionsOpen,
            connectionsTotal: server.connectionsTotal, connectionsRejected: server.connectionsRejected,
            requests: Dictionary(uniqueKeysWithValues: server.requests.map { ($0.key.rawValue, $0.value) }),
            errors: Dictionary(uniqueKeysWithValues: server.errors.map { ($0.key.rawValue, $0.value) }),
            routers: Dictionary(
                uniqueKeysWithValues: engine.routers.map { name, activity in
                    (
                        name,
                        RouterStats(
                            activity, exploring: generation.routers[name]?.exploration, shadows: generation.routers[name]?.shadows ?? [],
                            novelty: generation.routers[name]?.novelty)
                    )
                }),
            encoders: generation.encoders.mapValues { instance in
                let cache = instance.cache.counters
                let batcher = instance.batcher.counters
                return EncoderStats(
                    hits: cache.hits, misses: cache.misses, entries: cache.entries, capacity: cache.capacity, batches: batcher.batches,
                    batchedTexts: batcher.texts, batchedRequests: batcher.calls, largestBatch: batcher.largestBatch,
                    kernel: instance.encoder.kernel.rawValue, precision: instance.encoder.precision.rawValue)
            },
            reloads: engine.reloads, reloadFailures: engine.reloadFailures,
            reloadHistory: engine.history.map { event in
                ReloadRecord(
                    time: event.time, trigger: event.trigger, outcome: event.accepted ? "ok" : "rejected", generation: event.generation,
                    problems: event.problems)
            },
            decisionLog: decisionLog.map { log in
                let counters = log.counters
                return DecisionLogStats(path: log.settings.path, lines: counters.lines, failedWrites: counters.failedWrites)
            }, sessions: engine.sessions,
            feedback: feedback.map { store in
                let counters = store.counters
                return FeedbackStats(
                    directory: store.settings.directory, rows: counters.rows, syncs: counters.syncs, failedWrites: counters.failedWrites,
                    decisionsRemembered: rememberedDecisions.count, decisionBytes: rememberedDecisions.bytes)
            })
        if !engine.gatewayRouters.isEmpty || !engine.gatewayModels.isEmpty {
            gateway = GatewayStats(
                routers: engine.gatewayRouters.mapValues(GatewayTraffic.init), models: engine.gatewayModels.mapValues(GatewayTraffic.init))
        }
    }
}

extension GatewayTraffic {
    init(_ activity: GatewayActivity) {
        let served = activity.requests - activity.failed
        self.init(
            requests: activity.requests, failed: activity.failed, attempts: activity.attempts, fallbacks: activity.fallbacks,
            upstreamErrors: activity.upstreamErrors, promptTokens: activity.promptTokens, completionTokens: activity.completionTokens,
            spendUSD: activity.spend, unpriced: activity.unpriced,
            meanFirstByteSeconds: served > 0 ? activity.firstByteSeconds / Double(served) : nil,
            meanSeconds: served > 0 ? activity.totalSeconds / Double(served) : nil, firstByteSeconds: activity.firstByteQuantiles,
            seconds: activity.totalQuantiles)
    }
}

extension RouterStats {
    /// A router's counters; `exploring`, its exploration settings, when it explores; `shadows`, its shadow routers.
    init(_ activity: RouterActivity, exploring: DaemonConfig.Exploration?, shadows: [String], novelty: DaemonConfig.Novelty?) {
        self.init(
            decisions: activity.decisions, strong: activity.strong, weak: activity.weak, scored: activity.scored, errors: activity.errors,
            events: activity.events, fallbacks: activity.fallbacks, scoreQuantiles: activity.scoreQuantiles,
            latencyMicroseconds: activity.latencyMicroseconds, models: activity.models, outcomes: activity.outcomes,
            failedOutcomes: activity.failedOutcomes,
            exploration: exploring.map {
                ExplorationStats(
                    strategy: $0.strategy == .epsilonGreedy ? "epsilon_greedy" : "thompson", epsilon: $0.epsilon, drawn: activity.drawn,
                    explored: activity.explored, extraCost: activity.exploreExtraCost)
            },
            budget: activity.budget.map {
                BudgetStats(
                    metric: $0.metric, model: $0.model, target: $0.target, achieved: $0.achieved, lambda: $0.lambda, decisions: $0.decisions,
                    window: $0.window, fleetAchieved: $0.fleetAchieved, fleetHosts: $0.fleetHosts)
            },
            shadows: shadows.isEmpty && activity.shadows.isEmpty
                ? nil
                : ShadowsStats(
                    routers: Dictionary(
                        uniqueKeysWithValues: Set(shadows).union(activity.shadows.keys).map { name in
                            let shadow = activity.shadows[name] ?? ShadowActivity()
                            return (name, ShadowStats(decisions: shadow.decisions, agreements: shadow.agreements, errors: shadow.errors))
                        }), dropped: activity.shadowsDropped),
            novelty: novelty.map { NoveltyStats(threshold: $0.threshold, judged: activity.judged, novel: activity.novel) })
    }
}
