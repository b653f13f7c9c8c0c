import Fleet
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix
import RouterConfig
import RouterEngine
import RouterProtocol
import RouterVocabulary
import Synchronization
import TextEncoder

/// Turns one request line into one response line.
///
/// The request flows one way: decode, take what serves it once (a generation with its decision
/// log and feedback store, ``Serving``), resolve it into a ``RequestPlan`` (the router instance
/// looked up once), run the plan's one handler, map the engine's answer (or ``EngineError``) to
/// the wire, encode. A route or score on a router with an encoder waits for the encoder's batcher
/// only when the cache lacks a prompt, and is answered on the event loop either way. Other ops
/// that take milliseconds of CPU (reload, embed) run on a compute pool, and io_bound plugins on
/// an I/O pool, so the event loops keep serving and a slow network call never queues encoder work.
struct Dispatcher: Sendable {
    enum Reply {
        case now(ByteBuffer)
        case later(EventLoopFuture<ByteBuffer>)
    }

    let engine: Engine
    let reloader: Reloader
    let counters: ServerCounters
    let socketPath: String
    let threadPool: NIOThreadPool
    let ioThreadPool: NIOThreadPool
    /// Runs operators' changes (`reload`, `set`, `learn reset`) apart from clients' work.
    let adminThreadPool: NIOThreadPool
    /// Calls still running per router with a `timeout`, including those whose request timed out.
    let running = RunningCalls()

    /// One request's context: its id, what serves it, and where its reply is made.
    struct Context {
        let id: RequestID?
        let op: Op
        let serving: Serving
        /// Who sent the request (SO_PEERCRED), or nil when the credentials could not be read.
        let peer: Peer?
        let allocator: ByteBufferAllocator
        let eventLoop: any EventLoop
        var generation: Generation { serving.generation }
    }

    func handle(_ line: ByteBuffer, peer: Peer?, allocator: ByteBufferAllocator, eventLoop: any EventLoop) -> Reply {
        let decoded = RequestCodec.decode(Data(buffer: line, byteTransferStrategy: .noCopy))
        let request: Request
        switch decoded.outcome {
        case .success(let value): request = value
        case .failure(let error): return .now(failure(error, op: decoded.op, id: decoded.id, allocator: allocator))
        }
        let context = Context(id: decoded.id, op: request.op, serving: reloader.current, peer: peer, allocator: allocator, eventLoop: eventLoop)
        let plan: RequestPlan
        do throws(ProtocolError) {
            try authorize(request, peer: peer, generation: context.generation)
            do throws(EngineError) {
                plan = try RequestPlan(request, on: context.generation)
            } catch {
                throw ProtocolError(error)
            }
        } catch {
            return .now(failure(error, op: context.op, id: context.id, allocator: allocator))
        }
        switch plan {
        case .decide(let decide):
            switch decide.place {
            case .deadline(let seconds): return withDeadline(decide, timeout: seconds, context)
            case .io:
                return later(on: ioThreadPool, context) { () throws(ProtocolError) in try decideNow(decide, embeddings: nil, start: .now, context) }
            case .eventLoop: return withEmbeddings(decide, context)
            case .compute:
                return later(on: threadPool, context) { () throws(ProtocolError) in try decideNow(decide, embeddings: nil, start: .now, context) }
            }
        case .feedback(let report): return record(report, context)
        case .compute(let request): return later(on: threadPool, context) { () throws(ProtocolError) in try answer(request, context) }
        case .admin(let request): return later(on: adminThreadPool, context) { () throws(ProtocolError) in try answer(request, context) }
        case .immediate(let request): return .now(counted(context) { () throws(ProtocolError) in try answer(request, context) })
        }
    }

    /// Runs `body` on `pool` and replies with its line when it is done.
    private func later(on pool: NIOThreadPool, _ context: Context, _ body: @escaping @Sendable () throws(ProtocolError) -> [UInt8]) -> Reply {
        let reply = pool.runIfActive(eventLoop: context.eventLoop) { [self] in counted(context, body) }
        return .later(reply)
    }

    /// The response line `body` makes (or its error's), counted in the stats.
    private func counted(_ context: Context, _ body: () throws(ProtocolError) -> [UInt8]) -> ByteBuffer {
        do throws(ProtocolError) {
            let line = try body()
            counters.recordResponse(op: context.op, error: nil)
            return context.allocator.buffer(bytes: line)
        } catch {
            return failure(error, op: context.op, id: context.id, allocator: context.allocator)
        }
    }

    /// More calls than this still running on one router (past their timeout, stuck in the plugin)
    /// and new requests for it are refused at once, so a hung plugin cannot take every I/O thread.
    static let maxRunningPerRouter = 16

    /// Runs a decision for a router with a `timeout` on the I/O pool (a hung plugin must hold
    /// neither an event loop nor the encoder's threads) and answers `router_timeout` when the
    /// deadline passes first. The plugin's call cannot be stopped: it runs on, and its late
    /// answer is dropped.
    private func withDeadline(_ decide: RequestPlan.Decide, timeout: Double, _ context: Context) -> Reply {
        let router = decide.router.name
        guard running.begin(router, limit: Self.maxRunningPerRouter) else {
            engine.recordTimeout(router: router)
            let error = ProtocolError(
                .routerTimeout,
                "router '\(router)': \(Self.maxRunningPerRouter) calls are still running past its timeout of \(timeout) s; new requests are refused until they return"
            )
            return .now(failure(error, op: context.op, id: context.id, allocator: context.allocator))
        }
        let promise = context.eventLoop.makePromise(of: ByteBuffer.self)
        let settled = FirstCall()
        let timer = context.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) { [engine] in
            guard settled.claim() else { return }
            engine.recordTimeout(router: router)
            let error = ProtocolError(
                .routerTimeout, "router '\(router)' did not decide within its timeout of \(timeout) s; other routers are unaffected")
            promise.succeed(failure(error, op: context.op, id: context.id, allocator: context.allocator))
        }
        let work = ioThreadPool.runIfActive(eventLoop: context.eventLoop) { [self] () -> ByteBuffer? in
            defer { running.end(router) }
            let result = Result { () throws(ProtocolError) in try decideNow(decide, embeddings: nil, start: .now, context) }
            // Counted only if this answer, not the deadline, is the reply.
            guard settled.claim() else { return nil }
            return counted(context) { () throws(ProtocolError) in try result.get() }
        }
        work.whenComplete { result in
            switch result {
            case .success(let line?):
                timer.cancel()
                promise.succeed(line)
            case .success(nil): break  // the deadline answered first
            case .failure(let error):
                // The pool shut down (the daemon is stopping), so the work never ran.
                running.end(router)
                guard settled.claim() else { return }
                timer.cancel()
                promise.succeed(failure(ProtocolError(.shuttingDown, "\(error)"), op: context.op, id: context.id, allocator: context.allocator))
            }
        }
        return .later(promise.futureResult)
    }

    /// A decision on the event loop once the prompts' embeddings are ready: at once on a cache
    /// hit (no thread hop for a lookup and a dot product), or when the encoder's batcher has
    /// embedded them along with other requests'.
    private func withEmbeddings(_ decide: RequestPlan.Decide, _ context: Context) -> Reply {
        let start = ContinuousClock.now
        let promise = context.eventLoop.makePromise(of: ByteBuffer.self)
        let prepared = engine.prepareEmbeddings(
            for: decide.router, prompts: decide.prompts, requester: context.peer?.requester, on: context.generation
        ) { [self] outcome in
            context.eventLoop.execute {
                promise.succeed(
                    counted(context) { () throws(ProtocolError) in
                        switch outcome {
                        case .success(let embeddings): return try decideNow(decide, embeddings: embeddings, start: start, context)
                        case .failure(let error): throw ProtocolError(error)
                        }
                    })
            }
        }
        let embeddings: [[Float]]?
        switch prepared {
        case .pending: return .later(promise.futureResult)
        case .ready(let vectors): embeddings = vectors
        case .notNeeded: embeddings = nil
        }
        let reply = counted(context) { () throws(ProtocolError) in try decideNow(decide, embeddings: embeddings, start: start, context) }
        promise.succeed(reply)  // unused, but a promise must not be dropped unfulfilled
        return .now(reply)
    }

    /// The decision's response line. `embeddings` are its prompts' (see `withEmbeddings`), and
    /// `start` when the request began. A route is logged to its generation's decision log.
    private func decideNow(_ decide: RequestPlan.Decide, embeddings: [[Float]]?, start: ContinuousClock.Instant, _ context: Context)
        throws(ProtocolError) -> [UInt8]
    {
        do throws(EngineError) {
            switch decide.kind {
            case .route(let route):
                let decision = Decision(
                    try engine.route(
                        decide.router, prompt: route.prompt, override: PolicyOverride(route), session: route.session,
                        embedding: embeddings?.first, start: start, requester: context.peer?.requester, on: context.generation))
                context.serving.decisionLog?.record(decision, prompt: route.prompt)
                return ResponseCodec.success(decision, id: context.id)
            case .score(let score):
                let scores = try engine.score(
                    decide.router, prompts: score.prompts, embeddings: embeddings, requester: context.peer?.requester, on: context.generation)
                return ResponseCodec.success(
                    ScoreResult(
                        router: decide.router.name, generation: context.generation.number, scores: scores,
                        elapsedMicroseconds: Engine.microseconds(since: start)),
                    id: context.id)
            }
        } catch {
            throw ProtocolError(error)
        }
    }

    /// The response line to a request that is neither a decision nor feedback.
    private func answer(_ request: Request, _ context: Context) throws(ProtocolError) -> [UInt8] {
        let start = ContinuousClock.now
        let generation = context.generation
        do throws(EngineError) {
            switch request {
            case .embed(let embed):
                let embeddings = try engine.embed(
                    embed.texts, encoder: embed.encoder, policy: embed.longText, tokens: embed.tokens, requester: context.peer?.requester,
                    on: generation)
                return ResponseCodec.success(EmbedResult(embeddings, elapsedMicroseconds: Engine.microseconds(since: start)), id: context.id)
            case .learn(let learn):
                let statuses =
                    switch learn.action {
                    case .status: try engine.learningStatus(router: learn.router, on: generation)
                    case .reset: [try engine.forgetLearning(router: learn.router ?? "", on: generation)]
                    }
                return ResponseCodec.success(LearnResult(routers: statuses.map(LearningInfo.init)), id: context.id)
            case .routers: return ResponseCodec.success(RoutersResult(generation), id: context.id)
            case .health, .status: return ResponseCodec.success(status(on: generation), id: context.id)
            case .stats:
                var reply = stats(of: context.serving)
                // The encoders' counters sum every user's traffic: an admin's to see, no one else's.
                if context.peer?.isAdmin(context.generation.config.admin) != true { reply.encoders = reply.encoders.mapValues(\.withoutCounters) }
                return ResponseCodec.success(reply, id: context.id)
            case .reload(let reload):
                let outcome = try reloader.reload(trigger: reload.dryRun ? "reload op (dry run)" : "reload op", dryRun: reload.dryRun)
                return ResponseCodec.success(ReloadResult(outcome), id: context.id)
            case .set(let set):
                let outcome = try reloader.set(router: set.router, threshold: set.threshold, strongFraction: set.strongFraction)
                return ResponseCodec.success(SetResult(outcome), id: context.id)
            case .route, .score, .feedback:
                // RequestPlan sends these to their own handlers.
                break
            }
        } catch {
            throw ProtocolError(error)
        }
        throw ProtocolError(.internalError, "\(request.op.rawValue) reached the general path")
    }

    /// Checks a feedback report against the decision or router it names (once, in the engine),
    /// queues its row in the feedback store of the serving generation, and replies once the row
    /// is durable (or with `feedback_unavailable` if it could not be written; then nothing was recorded).
    private func record(_ report: FeedbackReport, _ context: Context) -> Reply {
        guard let store = context.serving.feedback else {
            let error = ProtocolError(
                .feedbackUnavailable, "feedback is not configured: add a 'feedback:' section with a 'directory' to \(context.generation.config.file)")
            return .now(failure(error, op: .feedback, id: context.id, allocator: context.allocator))
        }
        let outcome: Outcome
        do {
            let settings = context.generation.config.feedback
            let trusted = context.peer.map { settings?.trusts(uid: $0.uid, gid: $0.gid) == true } ?? false
            outcome = try engine.outcome(of: report, from: Reporter(uid: context.peer?.uid, trusted: trusted), on: context.generation)
        } catch {
            return .now(failure(ProtocolError(error), op: .feedback, id: context.id, allocator: context.allocator))
        }
        let promise = context.eventLoop.makePromise(of: ByteBuffer.self)
        store.record(outcome, learningIn: engine) { [counters] result in
            switch result {
            case .success:
                counters.recordResponse(op: .feedback, error: nil)
                promise.succeed(context.allocator.buffer(bytes: ResponseCodec.success(FeedbackResult(outcome), id: context.id)))
            case .failure(let error):
                promise.succeed(
                    failure(ProtocolError(.feedbackUnavailable, error.message), op: .feedback, id: context.id, allocator: context.allocator))
            }
        }
        return .later(promise.futureResult)
    }

    func status(on generation: Generation) -> StatusResult {
        StatusResult(
            version: Engine.version, pid: getpid(), uptimeSeconds: engine.uptimeSeconds, generation: generation.number,
            config: generation.config.file, socket: socketPath,
            plugins: generation.plugins.map { PluginInfo(name: $0.name, version: $0.version, library: $0.library, abiVersion: $0.abiVersion) },
            routers: generation.routerNames, encoders: generation.encoders.keys.sorted(), blasCore: BLASKernels.coreName,
            encoderKernels: generation.encoders.mapValues {
                "\($0.encoder.kernel.rawValue) \($0.encoder.kernelImplementation) \($0.encoder.precision.rawValue)"
            },
            encoderPrecision: generation.encoders.mapValues {
                EncoderPrecisionInfo(
                    precision: $0.encoder.precision.rawValue, requested: $0.config.precision.rawValue, note: $0.encoder.precisionNote)
            })
    }

    /// The `stats` reply: the engine's counters and the server's, with the serving generation's files.
    func stats(of serving: Serving) -> StatsResult {
        var result = StatsResult(
            engine: engine.statsSnapshot(on: serving.generation), server: counters.snapshot, decisionLog: serving.decisionLog,
            feedback: serving.feedback, rememberedDecisions: engine.rememberedDecisions,
            uptimeSeconds: engine.uptimeSeconds, generation: serving.generation)
        result.fleet = serving.fleet.map { FleetStats($0.status) }
        return result
    }

    /// An error line for a line the decoder rejected before it could be parsed.
    func failure(_ error: ProtocolError, op: Op? = nil, id: RequestID? = nil, allocator: ByteBufferAllocator) -> ByteBuffer {
        counters.recordResponse(op: op, error: error.code)
        return allocator.buffer(bytes: ResponseCodec.failure(error, id: id))
    }

    private func authorize(_ request: Request, peer: Peer?, generation: Generation) throws(ProtocolError) {
        let op = request.op
        guard request.needsAdmin else { return }
        let what = if case .learn = request { "'learn' with action 'reset'" } else { "'\(op.rawValue)'" }
        guard let peer else {
            throw ProtocolError(.forbidden, "\(what) needs an admin peer, and this connection's credentials could not be read")
        }
        guard peer.isAdmin(generation.config.admin) else {
            throw ProtocolError(
                .forbidden,
                "\(what) is an admin op; uid \(peer.uid) (gid \(peer.gid)) is not in admin.uids or admin.gids of \(generation.config.file)")
        }
    }
}
