import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOFoundationCompat
import NIOPosix
import RouterEngine
import RouterProtocol
import RouterVocabulary
import TextEncoder

/// Turns one request line into one response line.
///
/// The request flows one way: decode, take the current generation once, ask
/// the engine on it, map the engine's answer (or ``EngineError``) to the wire,
/// encode. A route or score on a router with an encoder waits for the encoder's
/// batcher only when the cache lacks a prompt, and is answered on the event loop
/// either way. Other ops that take milliseconds of CPU (reload, embed) run on a
/// compute pool, and io_bound plugins on an I/O pool, so the event loops keep
/// serving and a slow network call never queues encoder work.
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
    /// Calls still running per router with a `timeout`, including those whose request timed out.
    let running = RunningCalls()

    func handle(_ line: ByteBuffer, peer: Peer?, allocator: ByteBufferAllocator, eventLoop: any EventLoop) -> Reply {
        let decoded = RequestCodec.decode(Data(buffer: line, byteTransferStrategy: .noCopy))
        let request: Request
        switch decoded.outcome {
        case .success(let value): request = value
        case .failure(let error): return .now(failure(error, op: decoded.op, id: decoded.id, allocator: allocator))
        }
        let id = decoded.id
        let generation = engine.current
        do {
            try authorize(request, peer: peer, generation: generation)
        } catch {
            return .now(failure(error, op: request.op, id: id, allocator: allocator))
        }
        if case .feedback(let feedback) = request {
            return record(feedback, id: id, on: generation, allocator: allocator, eventLoop: eventLoop)
        }
        if let (router, timeout) = Self.deadline(of: request, on: generation) {
            return withDeadline(request, id: id, router: router, timeout: timeout, on: generation, allocator: allocator, eventLoop: eventLoop)
        }
        let pool: NIOThreadPool
        switch Work(for: request, on: generation) {
        case .immediate: return .now(allocator.buffer(bytes: respond(to: request, id: id, on: generation)))
        case .encoder: return withEmbeddings(request, id: id, on: generation, allocator: allocator, eventLoop: eventLoop)
        case .compute: pool = threadPool
        case .io: pool = ioThreadPool
        }
        let reply = pool.runIfActive(eventLoop: eventLoop) { [self] in respond(to: request, id: id, on: generation) }
        return .later(reply.map { allocator.buffer(bytes: $0) })
    }

    /// What answering a request costs, so the dispatcher knows where to run it.
    enum Work {
        /// Microseconds: answer on the event loop.
        case immediate
        /// A router with an encoder: its prompts' embeddings first, from the cache or the batcher.
        case encoder
        /// Milliseconds of CPU (`embed`, a reload): run it on the compute pool.
        case compute
        /// Waits on I/O (an io_bound plugin's network call): run it on the I/O pool.
        case io

        init(for request: Request, on generation: Generation) {
            func routerWork(_ name: String) -> Work {
                guard let router = generation.routers[name] else { return .immediate }
                return router.ioBound ? .io : (router.encoder != nil ? .encoder : .immediate)
            }
            switch request {
            case .route(let route): self = routerWork(route.router)
            case .score(let score): self = routerWork(score.router)
            // `set` waits for any reload in progress.
            case .embed, .reload, .set: self = .compute
            // Forgetting rewrites the plugin's state on disk.
            case .learn(let learn): self = learn.action == .reset ? .compute : .immediate
            // Checked at once; the reply waits for the feedback store's sync, not for a thread.
            case .feedback, .routers, .health, .status, .stats: self = .immediate
            }
        }
    }

    /// The router and its `timeout`, for a route or score request on a router that has one.
    static func deadline(of request: Request, on generation: Generation) -> (String, Double)? {
        let name: String
        switch request {
        case .route(let route): name = route.router
        case .score(let score): name = score.router
        default: return nil
        }
        guard let router = generation.routers[name], let timeout = router.timeoutSeconds else { return nil }
        return (router.name, timeout)
    }

    /// More calls than this still running on one router (past their timeout, stuck in the plugin)
    /// and new requests for it are refused at once, so a hung plugin cannot take every I/O thread.
    static let maxRunningPerRouter = 16

    /// Runs a request for a router with a `timeout` on the I/O pool (a hung plugin must hold
    /// neither an event loop nor the encoder's threads) and answers `router_timeout` when the
    /// deadline passes first. The plugin's call cannot be stopped: it runs on, and its late
    /// answer is dropped.
    private func withDeadline(
        _ request: Request, id: RequestID?, router: String, timeout: Double, on generation: Generation, allocator: ByteBufferAllocator,
        eventLoop: any EventLoop
    ) -> Reply {
        guard running.begin(router, limit: Self.maxRunningPerRouter) else {
            engine.recordTimeout(router: router)
            let error = ProtocolError(
                .routerTimeout,
                "router '\(router)': \(Self.maxRunningPerRouter) calls are still running past its timeout of \(timeout) s; new requests are refused until they return"
            )
            return .now(failure(error, op: request.op, id: id, allocator: allocator))
        }
        let promise = eventLoop.makePromise(of: ByteBuffer.self)
        let settled = NIOLockedValueBox(false)
        let settle = { @Sendable () -> Bool in
            settled.withLockedValue { done in
                defer { done = true }; return !done
            }
        }
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) { [engine] in
            guard settle() else { return }
            engine.recordTimeout(router: router)
            let error = ProtocolError(
                .routerTimeout, "router '\(router)' did not decide within its timeout of \(timeout) s; other routers are unaffected")
            promise.succeed(failure(error, op: request.op, id: id, allocator: allocator))
        }
        let work = ioThreadPool.runIfActive(eventLoop: eventLoop) { [self] in
            defer { running.end(router) }
            return answerCounted(request, id: id, on: generation, settle: settle)
        }
        work.whenComplete { result in
            switch result {
            case .success(let line?):
                timer.cancel()
                promise.succeed(allocator.buffer(bytes: line))
            case .success(nil): break  // the deadline answered first
            case .failure(let error):
                // The pool shut down (the daemon is stopping), so the work never ran.
                running.end(router)
                guard settle() else { return }
                timer.cancel()
                promise.succeed(failure(ProtocolError(.shuttingDown, "\(error)"), op: request.op, id: id, allocator: allocator))
            }
        }
        return .later(promise.futureResult)
    }

    /// A route or score on a router with an encoder. Its plugin runs on the event loop once the
    /// prompts' embeddings are ready: at once on a cache hit (no thread hop for a lookup and a
    /// dot product), or when the encoder's batcher has embedded them along with other requests'.
    private func withEmbeddings(
        _ request: Request, id: RequestID?, on generation: Generation, allocator: ByteBufferAllocator, eventLoop: any EventLoop
    ) -> Reply {
        let start = ContinuousClock.now
        let router: String
        let prompts: [String]
        switch request {
        case .route(let route): (router, prompts) = (route.router, [route.prompt])
        case .score(let score): (router, prompts) = (score.router, score.prompts)
        default: return .now(allocator.buffer(bytes: respond(to: request, id: id, on: generation)))
        }
        let promise = eventLoop.makePromise(of: ByteBuffer.self)
        let prepared = engine.prepareEmbeddings(router: router, prompts: prompts, on: generation) { [self] embeddings in
            eventLoop.execute {
                promise.succeed(allocator.buffer(bytes: respond(to: request, id: id, on: generation, embeddings: embeddings, start: start)))
            }
        }
        let embeddings: [[Float]]?
        switch prepared {
        case .pending: return .later(promise.futureResult)
        case .ready(let vectors): embeddings = vectors
        case .notNeeded: embeddings = nil
        }
        let reply = allocator.buffer(bytes: respond(to: request, id: id, on: generation, embeddings: embeddings, start: start))
        promise.succeed(reply)  // unused, but a promise must not be dropped unfulfilled
        return .now(reply)
    }

    /// The response line, counted, if `settle` says this answer is the first; nil if the deadline was.
    private func answerCounted(_ request: Request, id: RequestID?, on generation: Generation, settle: @Sendable () -> Bool) -> [UInt8]? {
        let line: [UInt8]
        let code: ErrorCode?
        do throws(ProtocolError) {
            line = try answer(request, id: id, on: generation)
            code = nil
        } catch {
            line = ResponseCodec.failure(error, id: id)
            code = error.code
        }
        guard settle() else { return nil }
        counters.recordResponse(op: request.op, error: code)
        return line
    }

    /// The response line to a decoded request, counted in the stats. `embeddings` are a route's
    /// or score's prompts' (see `withEmbeddings`), and `start` when the request began.
    private func respond(
        to request: Request, id: RequestID?, on generation: Generation, embeddings: [[Float]]? = nil, start: ContinuousClock.Instant = .now
    ) -> [UInt8] {
        do throws(ProtocolError) {
            let line = try answer(request, id: id, on: generation, embeddings: embeddings, start: start)
            counters.recordResponse(op: request.op, error: nil)
            return line
        } catch {
            counters.recordResponse(op: request.op, error: error.code)
            return ResponseCodec.failure(error, id: id)
        }
    }

    private func answer(
        _ request: Request, id: RequestID?, on generation: Generation, embeddings: [[Float]]? = nil, start: ContinuousClock.Instant = .now
    ) throws(ProtocolError) -> [UInt8] {
        do throws(EngineError) {
            switch request {
            case .route(let route):
                let decision = Decision(
                    try engine.route(
                        router: route.router, prompt: route.prompt, override: PolicyOverride(route), session: route.session,
                        embedding: embeddings?.first, start: start, on: generation))
                reloader.decisionLog.current?.record(decision, prompt: route.prompt)
                return ResponseCodec.success(decision, id: id)
            case .score(let score):
                let scores = try engine.score(router: score.router, prompts: score.prompts, embeddings: embeddings, on: generation)
                return ResponseCodec.success(
                    ScoreResult(
                        router: score.router, generation: generation.number, scores: scores, elapsedMicroseconds: Engine.microseconds(since: start)),
                    id: id)
            case .embed(let embed):
                let embeddings = try engine.embed(
                    embed.texts, encoder: embed.encoder, policy: embed.longText, tokens: embed.tokens,
                    on: generation)
                return ResponseCodec.success(EmbedResult(embeddings, elapsedMicroseconds: Engine.microseconds(since: start)), id: id)
            case .feedback:
                // `handle` records feedback itself: its reply waits for the store's sync.
                return ResponseCodec.failure(ProtocolError(.internalError, "feedback reached the synchronous path"), id: id)
            case .learn(let learn):
                let statuses =
                    switch learn.action {
                    case .status: try engine.learningStatus(router: learn.router, on: generation)
                    case .reset: [try engine.forgetLearning(router: learn.router ?? "", on: generation)]
                    }
                return ResponseCodec.success(LearnResult(routers: statuses.map(LearningInfo.init)), id: id)
            case .routers: return ResponseCodec.success(RoutersResult(generation), id: id)
            case .health, .status: return ResponseCodec.success(status(on: generation), id: id)
            case .stats: return ResponseCodec.success(stats(on: generation), id: id)
            case .reload(let reload):
                let outcome = try reloader.reload(trigger: reload.dryRun ? "reload op (dry run)" : "reload op", dryRun: reload.dryRun)
                return ResponseCodec.success(ReloadResult(outcome), id: id)
            case .set(let set):
                let outcome = try engine.set(router: set.router, threshold: set.threshold, strongFraction: set.strongFraction)
                return ResponseCodec.success(SetResult(outcome), id: id)
            }
        } catch {
            throw ProtocolError(error)
        }
    }

    /// Checks a feedback report against the decision or router it names, queues its row in the
    /// feedback store, and replies once the row is durable (or with `feedback_unavailable` if it
    /// could not be written; then nothing was recorded).
    private func record(
        _ request: FeedbackRequest, id: RequestID?, on generation: Generation, allocator: ByteBufferAllocator, eventLoop: any EventLoop
    ) -> Reply {
        guard let store = reloader.feedback.current else {
            let error = ProtocolError(
                .feedbackUnavailable, "feedback is not configured: add a 'feedback:' section with a 'directory' to \(generation.config.file)")
            return .now(failure(error, op: .feedback, id: id, allocator: allocator))
        }
        let outcome: Outcome
        do {
            outcome = try engine.outcome(of: FeedbackReport(request), on: generation)
        } catch {
            return .now(failure(ProtocolError(error), op: .feedback, id: id, allocator: allocator))
        }
        let promise = eventLoop.makePromise(of: ByteBuffer.self)
        store.append(outcome) { [counters, engine] result in
            switch result {
            case .success:
                // Learn from what is on disk, so the online state and the store agree.
                engine.learn(outcome, on: engine.current)
                counters.recordResponse(op: .feedback, error: nil)
                let recorded = if case .pairwise = outcome.value { "battles" } else { "quality" }
                let reply = FeedbackResult(decisionID: outcome.decisionID, router: outcome.router, model: outcome.model, recorded: recorded)
                promise.succeed(allocator.buffer(bytes: ResponseCodec.success(reply, id: id)))
            case .failure(let error):
                promise.succeed(failure(ProtocolError(.feedbackUnavailable, error.message), op: .feedback, id: id, allocator: allocator))
            }
        }
        return .later(promise.futureResult)
    }

    func status(on generation: Generation) -> StatusResult {
        StatusResult(
            version: Engine.version, pid: getpid(), uptimeSeconds: engine.uptimeSeconds, generation: generation.number,
            config: generation.config.file, socket: socketPath,
            plugins: generation.libraries.values.sorted { $0.name < $1.name }.map {
                PluginInfo(name: $0.name, version: $0.version, library: $0.path, abiVersion: $0.abiVersion)
            },
            routers: generation.routerNames, encoders: generation.encoders.keys.sorted(), blasCore: BLASKernels.coreName,
            encoderKernels: generation.encoders.mapValues {
                "\($0.encoder.kernel.rawValue) \($0.encoder.kernelImplementation) \($0.encoder.precision.rawValue)"
            },
            encoderPrecision: generation.encoders.mapValues {
                EncoderPrecisionInfo(
                    precision: $0.encoder.precision.rawValue, requested: $0.config.precision.rawValue, note: $0.encoder.precisionNote)
            })
    }

    /// The `stats` reply: the engine's counters and the server's.
    func stats(on generation: Generation) -> StatsResult {
        StatsResult(
            engine: engine.statsSnapshot(on: generation), server: counters.snapshot, decisionLog: reloader.decisionLog.current,
            feedback: reloader.feedback.current, rememberedDecisions: engine.rememberedDecisions,
            uptimeSeconds: engine.uptimeSeconds, generation: generation)
    }

    /// An error line for a line the decoder rejected before it could be parsed.
    func failure(_ error: ProtocolError, op: Op? = nil, id: RequestID? = nil, allocator: ByteBufferAllocator) -> ByteBuffer {
        counters.recordResponse(op: op, error: error.code)
        return allocator.buffer(bytes: ResponseCodec.failure(error, id: id))
    }

    private func authorize(_ request: Request, peer: Peer?, generation: Generation) throws(ProtocolError) {
        let op = request.op
        if op == .feedback, let settings = generation.config.feedback, !(settings.uids.isEmpty && settings.gids.isEmpty) {
            guard let peer, settings.allows(uid: peer.uid, gid: peer.gid) else {
                let who = peer.map { "uid \($0.uid) (gid \($0.gid))" } ?? "this connection (its credentials could not be read)"
                throw ProtocolError(.forbidden, "\(who) may not send feedback: it is not in feedback.allow of \(generation.config.file)")
            }
        }
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
