import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix
import RouterEngine
import RouterProtocol

/// Turns one request line into one response line.
///
/// The request flows one way: decode, take the current generation once,
/// score on it, encode. Ops that take milliseconds of CPU (the encoder, reload)
/// run on a compute pool, and io_bound plugins on an I/O pool, so the event
/// loops keep serving and a slow network call never queues encoder work.
struct Dispatcher: Sendable {
    enum Reply {
        case now(ByteBuffer)
        case later(EventLoopFuture<ByteBuffer>)
    }

    let engine: Engine
    let socketPath: String
    let threadPool: NIOThreadPool
    let ioThreadPool: NIOThreadPool

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
            try authorize(request.op, peer: peer, generation: generation)
        } catch {
            return .now(failure(error, op: request.op, id: id, allocator: allocator))
        }
        let pool: NIOThreadPool
        switch engine.work(for: request, on: generation) {
        case .immediate: return .now(allocator.buffer(bytes: respond(to: request, id: id, on: generation)))
        case .compute: pool = threadPool
        case .io: pool = ioThreadPool
        }
        let reply = pool.runIfActive(eventLoop: eventLoop) { [self] in respond(to: request, id: id, on: generation) }
        return .later(reply.map { allocator.buffer(bytes: $0) })
    }

    /// The response line to a decoded request, counted in the stats.
    private func respond(to request: Request, id: RequestID?, on generation: Generation) -> [UInt8] {
        do throws(ProtocolError) {
            let line: [UInt8]
            switch request {
            case .route(let route): line = ResponseCodec.success(try engine.route(route, on: generation), id: id)
            case .score(let score): line = ResponseCodec.success(try engine.score(score, on: generation), id: id)
            case .embed(let embed): line = ResponseCodec.success(try engine.embed(embed, on: generation), id: id)
            case .routers: line = ResponseCodec.success(engine.routers(on: generation), id: id)
            case .health, .status: line = ResponseCodec.success(engine.status(on: generation, socket: socketPath), id: id)
            case .stats: line = ResponseCodec.success(engine.statsSnapshot(on: generation), id: id)
            case .reload(let reload):
                line = ResponseCodec.success(
                    try engine.reload(trigger: reload.dryRun ? "reload op (dry run)" : "reload op", dryRun: reload.dryRun), id: id)
            case .set(let set): line = ResponseCodec.success(try engine.set(set), id: id)
            }
            engine.stats.recordResponse(op: request.op, error: nil)
            return line
        } catch {
            engine.stats.recordResponse(op: request.op, error: error.code)
            return ResponseCodec.failure(error, id: id)
        }
    }

    /// An error line for a line the decoder rejected before it could be parsed.
    func failure(_ error: ProtocolError, op: Op? = nil, id: RequestID? = nil, allocator: ByteBufferAllocator) -> ByteBuffer {
        engine.stats.recordResponse(op: op, error: error.code)
        return allocator.buffer(bytes: ResponseCodec.failure(error, id: id))
    }

    private func authorize(_ op: Op, peer: Peer?, generation: Generation) throws(ProtocolError) {
        guard op.isAdmin else { return }
        guard let peer else {
            throw ProtocolError(.forbidden, "'\(op.rawValue)' needs an admin peer, and this connection's credentials could not be read")
        }
        guard peer.isAdmin(generation.config.admin) else {
            throw ProtocolError(
                .forbidden,
                "'\(op.rawValue)' is an admin op; uid \(peer.uid) (gid \(peer.gid)) is not in admin.uids or admin.gids of \(generation.config.file)")
        }
    }
}
