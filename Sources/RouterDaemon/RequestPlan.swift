import RouterConfig
import RouterEngine
import RouterProtocol
import RouterVocabulary

/// A decoded request resolved once against what serves it: the router instance looked up, the
/// kind of work, where it runs and its deadline. The dispatcher then runs one handler per kind,
/// with instances, never names.
enum RequestPlan {
    /// A `route` or `score`: a router's plugin decides.
    case decide(Decide)
    /// A `feedback` report, checked against its decision once by the engine.
    case feedback(FeedbackReport)
    /// Milliseconds of CPU (`embed`): run on the compute pool.
    case compute(Request)
    /// An operator's change (`reload`, `set`, forgetting learned state): a wait on the reload lock
    /// or a write of state, run on the admin pool, so that clients' work never delays it.
    case admin(Request)
    /// Microseconds: answered on the event loop.
    case immediate(Request)

    /// A route or score on one router instance.
    struct Decide {
        enum Kind {
            case route(RouteRequest)
            case score(ScoreRequest)
        }

        let kind: Kind
        let router: RouterInstance
        var prompts: [String] {
            switch kind {
            case .route(let route): [route.prompt]
            case .score(let score): score.prompts
            }
        }

        /// Where the plugin's call runs.
        enum Place {
            /// With a `timeout`, on the I/O pool behind a deadline: a hung plugin holds neither an
            /// event loop nor the encoder's threads.
            case deadline(seconds: Double)
            /// An io_bound plugin (a network call) on the I/O pool.
            case io
            /// On the event loop, once the prompts' embeddings are ready (cache or batcher).
            case eventLoop
            /// A `score` of several prompts, on the compute pool: its plugin calls add up (an
            /// sw_ranking prompt reads the whole index), and an event loop serves many connections.
            case compute
        }

        var place: Place {
            if let timeout = router.timeoutSeconds { return .deadline(seconds: timeout) }
            if router.ioBound { return .io }
            return prompts.count > 1 ? .compute : .eventLoop
        }
    }

    /// Resolves `request` on `generation`: an unknown router is an error here, once, and so is a
    /// request over a limit that bounds its cost (it is refused before any work, never answered slowly).
    init(_ request: Request, on generation: Generation) throws(EngineError) {
        switch request {
        case .route(let route): self = .decide(Decide(kind: .route(route), router: try Engine.router(named: route.router, in: generation)))
        case .score(let score): self = .decide(Decide(kind: .score(score), router: try Engine.router(named: score.router, in: generation)))
        case .feedback(let feedback): self = .feedback(FeedbackReport(feedback))
        case .embed: self = .compute(request)
        // `set` waits for any reload in progress.
        case .reload, .set: self = .admin(request)
        // Forgetting rewrites the plugin's state on disk.
        case .learn(let learn): self = learn.action == .reset ? .admin(request) : .immediate(request)
        case .routers, .health, .status, .stats: self = .immediate(request)
        }
        if case .decide(let decide) = self { try Engine.checkSize(decide.prompts, limits: generation.config.limits) }
    }
}
