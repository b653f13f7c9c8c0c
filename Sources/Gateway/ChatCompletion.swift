#if Gateway
    import Foundation
    import HTTPTypes
    import HTTPServing
    import Logging
    import NIOCore
    import NIOPosix
    import OpenAIProtocol
    import RouterConfig
    import RouterDaemon
    import RouterEngine
    import RouterJSON
    import Synchronization
    import UpstreamFallback

    extension HTTPField.Name {
        static let decisionID = Self("x-routerd-decision-id")!
        static let router = Self("x-routerd-router")!
        static let model = Self("x-routerd-model")!
        static let attempts = Self("x-routerd-attempts")!
        /// A conversation's id, for session affinity (else the body's `user`).
        static let session = Self("x-session-id")!
        static let retryAfter = Self("retry-after")!
    }

    /// One chat completion on its way through the upstreams: what was decided, what was tried.
    struct CompletionRun: Sendable {
        var decision: RoutingDecision?
        var prompt: String
        var generation: Generation
        var serving: Serving
        var start: Double
        /// Each attempt: the model called and how it failed (nil: it answered).
        var attempts: [(model: String, failure: String?)] = []
        /// USD spent on this request so far (priced usage of answered attempts).
        var spent = 0.0

        var router: String? { decision?.router }
    }

    extension Gateway {
        func chatCompletion(body: ByteBuffer, headers: HTTPFields, requester: Requester?, serving: Serving, settings: DaemonConfig.Gateway) async
            -> ServedResponse
        {
            let start = clock.seconds
            let request: ChatCompletionRequest
            do {
                request = try ChatCompletionRequest(json: body.readableBytesView)
            } catch {
                return Self.error(error)
            }
            let generation = serving.generation
            let catalogue = generation.config.models
            let target: ModelTarget
            do {
                target = try ModelTarget.resolve(
                    request.model, routers: Set(generation.routerNames), canonical: { catalogue.model(named: $0)?.name },
                    known: generation.routerNames.map { "router-\($0)" } + catalogue.knownNames)
            } catch {
                return Self.error(error)
            }
            guard await limit.acquire(limit: settings.maxConcurrent, timeout: .milliseconds(Int64(settings.queueTimeoutSeconds * 1000))) else {
                return Self.error(
                    OpenAIError(
                        status: 429,
                        message:
                            "the gateway is serving gateway.max_concurrent (\(settings.maxConcurrent)) requests and none finished within gateway.queue_timeout; retry shortly",
                        type: "rate_limit_error", code: "gateway_overloaded"),
                    headers: [.retryAfter: "1"])
            }
            var released = false
            defer { if !released { limit.release() } }
            var run = CompletionRun(decision: nil, prompt: request.prompt, generation: generation, serving: serving, start: start)
            let order: [String]
            switch target {
            case .model(let name):
                order = [name]
            case .router(let name, let knob):
                let session = headers[.session] ?? request.user
                do {
                    run.decision = try await route(
                        router: name, prompt: request.prompt, override: knob.map { .knob($0) }, session: session, requester: requester,
                        generation: generation)
                } catch {
                    return Self.error(Self.openAIError(error))
                }
                order = engine.fallbackOrder(of: run.decision!)
            }
            if settings.logPrompts {
                logger.debug("gateway prompt", metadata: ["model": "\(request.model)", "prompt": "\(request.prompt)"])
            }
            var fallback = FallbackRun(candidates: order, settings: settings.fallback, start: start, cooling: { coolDowns.isCooling($0, at: start) })
            var step = fallback.first()
            var lastFailure: (failure: AttemptFailure, message: String, status: Int?, body: [UInt8]?)?
            while case .call(let modelName, let delay) = step {
                if delay > 0 { try? await Task.sleep(for: .milliseconds(Int64(delay * 1000))) }
                if let decision = run.decision, modelName != decision.model,
                    !engine.budgetAllowsFallback(decision, to: modelName, spent: run.spent, on: generation)
                {
                    return finish(
                        run,
                        error: OpenAIError(
                            status: 429,
                            message:
                                "router '\(decision.router)' cannot pay for a fallback to \(modelName): its budget would be exceeded (\(lastFailure.map { "\($0.failure)" } ?? "the first call failed") from \(decision.model))",
                            type: "insufficient_quota", code: "budget_exceeded"), headers: [:])
                }
                guard let model = catalogue.model(named: modelName), let endpoint = model.endpoint else {
                    return finish(
                        run,
                        error: OpenAIError(
                            status: 500,
                            message:
                                "model '\(modelName)' has no endpoint in the catalogue of \(generation.config.file); add endpoint: {base_url: …} to it",
                            type: "server_error", code: "no_endpoint"), headers: [:])
                }
                let forwarded = request.forwarded(as: endpoint.model)
                let result = await UpstreamCall.call(
                    served: modelName, endpoint: endpoint, body: forwarded, stream: request.stream, client: client, settings: settings)
                switch result {
                case .completion(let answer, let usage):
                    attempted(&run, model: modelName, failure: nil)
                    coolDowns.succeeded(modelName)
                    let cost = usage.map { $0.cost(inputPrice: model.inputPrice, outputPrice: model.outputPrice) }
                    run.spent += cost ?? 0
                    let elapsed = clock.seconds - start
                    record(run, served: modelName, usage: usage, cost: cost, firstByte: elapsed, total: elapsed, status: 200)
                    if settings.logPrompts {
                        logger.debug(
                            "gateway completion", metadata: ["model": "\(modelName)", "completion": "\(String(decoding: answer, as: UTF8.self))"])
                    }
                    return ServedResponse(
                        status: .ok, headers: responseHeaders(run, served: modelName, contentType: "application/json"),
                        body: .bytes(ByteBuffer(bytes: answer)))
                case .stream(let first, let rest):
                    attempted(&run, model: modelName, failure: nil)
                    coolDowns.succeeded(modelName)
                    // The slot is held until the stream ends, by the body writer.
                    released = true
                    return streamResponse(run, served: modelName, prices: model, first: first, rest: rest, includeUsage: request.includeUsage)
                case .failed(let failure, let message, let status, let body):
                    attempted(&run, model: modelName, failure: failure)
                    lastFailure = (failure, message, status, body)
                    if coolDowns.failed(modelName, failure, at: clock.seconds, settings: settings.fallback) {
                        logger.warning(
                            "upstream cooling down",
                            metadata: ["model": "\(modelName)", "error": "\(failure)", "cool_down_s": "\(settings.fallback.coolDown)"])
                    }
                    // A provider's failure teaches the router; a request the upstream refused (any other 4xx) does not.
                    if failure.isRetryable { recordFailedOutcome(run, model: modelName) }
                    step = fallback.next(after: failure, at: clock.seconds, jitter: Double.random(in: 0..<1))
                }
            }
            guard case .giveUp(let reason) = step, let lastFailure else {
                return finish(run, error: OpenAIError(status: 500, message: "no attempt was made", type: "server_error"), headers: [:])
            }
            logger.notice("gateway request failed", metadata: ["model": "\(request.model)", "reason": "\(reason)"])
            // The request's own fault, as the upstream said it: its status and its body, when that is an OpenAI-style error.
            if case .status(let code, _) = lastFailure.failure, (400..<500).contains(code), code != 429, let body = lastFailure.body,
                UpstreamCall.message(of: body) != nil
            {
                record(run, served: nil, usage: nil, cost: nil, firstByte: nil, total: clock.seconds - run.start, status: code)
                return ServedResponse(
                    status: HTTPResponse.Status(code: code), headers: responseHeaders(run, served: nil, contentType: "application/json"),
                    body: .bytes(ByteBuffer(bytes: body)))
            }
            return finish(run, error: Self.giveUpError(lastFailure.failure, message: lastFailure.message, reason: reason), headers: [:])
        }

        /// The engine's decision, its prompt embedded first (on the encoder's batcher, off this task's thread).
        func route(
            router name: String, prompt: String, override: PolicyOverride?, session: String?, requester: Requester?, generation: Generation
        ) async throws(EngineError) -> RoutingDecision {
            let router = try Engine.router(named: name, in: generation)
            let start = ContinuousClock.now
            let embedding: [Float]?
            let pending = PendingEmbedding()
            let prepared = engine.prepareEmbeddings(for: router, prompts: [prompt], requester: requester, on: generation) { outcome in
                pending.resolve(outcome)
            }
            switch prepared {
            case .notNeeded:
                pending.resolve(.success([]))
                embedding = nil
            case .ready(let vectors):
                pending.resolve(.success(vectors))
                embedding = vectors.first
            case .pending:
                switch await pending.value() {
                case .success(let vectors): embedding = vectors.first
                case .failure(let error): throw error
                }
            }
            guard router.ioBound else {
                return try engine.route(
                    router, prompt: prompt, override: override, session: session, embedding: embedding, start: start, requester: requester,
                    on: generation)
            }
            // A network call per decision: on the I/O pool, as the socket does, not on a cooperative thread.
            let engine = engine
            let decided: Result<RoutingDecision, EngineError>
            do {
                decided = try await ioThreadPool.runIfActive {
                    Result { () throws(EngineError) in
                        try engine.route(
                            router, prompt: prompt, override: override, session: session, embedding: embedding, start: start,
                            requester: requester, on: generation)
                    }
                }
            } catch {
                throw .plugin(router: name, message: "routerd is stopping, and its I/O pool with it: \(error)")
            }
            return try decided.get()
        }

        func attempted(_ run: inout CompletionRun, model: String, failure: AttemptFailure?) {
            run.attempts.append((model, failure?.errorClass))
            engine.stats.recordUpstreamAttempt(router: run.router, model: model, failure: failure?.errorClass)
        }

        /// A failed upstream call, as a `failed` outcome for its model, when feedback is configured:
        /// the learning loop sees provider errors without any client code.
        func recordFailedOutcome(_ run: CompletionRun, model: String) {
            guard let decision = run.decision, let store = run.serving.feedback else { return }
            let report = FeedbackReport(subject: .decision(id: decision.id), model: model, value: .failed)
            guard let outcome = try? engine.outcome(of: report, from: Reporter(uid: nil, trusted: true), on: run.generation) else { return }
            store.record(outcome, learningIn: engine) { _ in }
        }

        func responseHeaders(_ run: CompletionRun, served: String?, contentType: String) -> HTTPFields {
            var fields: HTTPFields = [.contentType: contentType, .attempts: "\(run.attempts.count)"]
            if let decision = run.decision {
                fields[.decisionID] = decision.id
                fields[.router] = decision.router
            }
            if let served { fields[.model] = served }
            return fields
        }

        /// The decision log's line, `stats`' counters and the budget's real cost, once a request has ended.
        func record(_ run: CompletionRun, served: String?, usage: Usage?, cost: Double?, firstByte: Double?, total: Double, status: Int) {
            engine.stats.recordGatewayRequest(
                GatewayRequestRecord(
                    router: run.router, served: served, fellBack: served != nil && served != run.attempts.first?.model,
                    promptTokens: usage?.promptTokens, completionTokens: usage?.completionTokens, cost: cost, firstByteSeconds: firstByte,
                    totalSeconds: total))
            guard let decision = run.decision else { return }
            engine.settle(decision, cost: run.spent, servedBy: served, on: run.generation)
            guard let log = run.serving.decisionLog else { return }
            var fields: [String: JSONValue] = [
                "via": "gateway", "status": .integer(Int64(status)),
                "attempts": .array(
                    run.attempts.map { attempt in
                        var entry: [String: JSONValue] = ["model": .string(attempt.model)]
                        if let failure = attempt.failure { entry["error"] = .string(failure) }
                        return .object(entry)
                    }),
                "served_model": served.map(JSONValue.string) ?? .null,
            ]
            if let cost { fields["cost"] = .number(cost) }
            if let usage {
                fields["prompt_tokens"] = .integer(Int64(usage.promptTokens))
                fields["completion_tokens"] = .integer(Int64(usage.completionTokens))
            }
            log.record(served: decision, prompt: run.prompt, served: fields)
        }

        /// An error answer that ends a request, counted and logged like a served one.
        func finish(_ run: CompletionRun, error: OpenAIError, headers extra: HTTPFields) -> ServedResponse {
            record(run, served: nil, usage: nil, cost: nil, firstByte: nil, total: clock.seconds - run.start, status: error.status)
            var fields = responseHeaders(run, served: nil, contentType: "application/json")
            for field in extra { fields[field.name] = field.value }
            return Self.error(error, headers: fields)
        }

        /// The client's error once every attempt failed: the upstream's own 4xx as it said it; a
        /// 429 as a 429; anything else a 502 (or 504 for a timeout) naming the reason.
        static func giveUpError(_ failure: AttemptFailure, message: String, reason: String) -> OpenAIError {
            switch failure {
            case .status(429, _):
                return OpenAIError(
                    status: 429, message: "upstream rate limit: \(message) (\(reason))", type: "rate_limit_error", code: "upstream_rate_limited")
            case .status(let code, _) where (400..<500).contains(code):
                return OpenAIError(status: code, message: message, type: "invalid_request_error", code: "upstream_rejected")
            case .timeout:
                return OpenAIError(status: 504, message: "upstream timed out: \(reason)", type: "upstream_error", code: failure.errorClass)
            default:
                return OpenAIError(
                    status: 502, message: "every attempt failed: \(reason) (\(message))", type: "upstream_error", code: failure.errorClass)
            }
        }

    }

    /// The embedding the engine's batcher delivers later, awaited by the request's task.
    final class PendingEmbedding: Sendable {
        private let state = Mutex<(result: Result<[[Float]], EngineError>?, waiter: CheckedContinuation<Result<[[Float]], EngineError>, Never>?)>(
            (nil, nil))

        func resolve(_ result: Result<[[Float]], EngineError>) {
            let waiter = state.withLock { state -> CheckedContinuation<Result<[[Float]], EngineError>, Never>? in
                guard state.result == nil else { return nil }
                state.result = result
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: result)
        }

        func value() async -> Result<[[Float]], EngineError> {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Result<[[Float]], EngineError>? in
                    if let result = state.result { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
#endif
