import Logging
import NIOCore
import NIOExtras
import RouterProtocol

/// Serves one client connection.
///
/// Requests may be pipelined; responses go out in request order. Each request
/// takes a slot in `slots` when it is read; the slot is filled when its reply
/// is ready, and replies are written from the head while the head is filled.
/// Reading pauses while `maxInFlight` requests are unanswered or the client
/// is not reading its responses, so a stalled client holds only its own
/// bounded buffers and never delays anyone else. Lines already read past the
/// limit (one socket read can hold many) wait in `waiting`, undecoded, until
/// a slot frees: no more than `maxInFlight` requests of one connection are
/// ever being worked on.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = LineFrame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let dispatcher: Dispatcher
    private let logger: Logger
    private let peer: Peer?
    private let maxInFlight: Int
    private let maxLineBytes: Int
    private var slots = CircularBuffer<ByteBuffer?>()
    /// Lines read while every slot was taken, in order; dispatched as slots free.
    private var waiting = CircularBuffer<LineFrame>()
    /// Set while `waiting` is being drained, so a reply filled during it does not drain again.
    private var draining = false
    /// Sequence number of `slots.first`.
    private var headSequence: UInt64 = 0
    private var heldRead = false
    /// Set on shutdown or when the client closed its sending side: answer what
    /// is pending, then close.
    private var closing = false
    private var quiescing = false
    private var needsFlush = false

    init(dispatcher: Dispatcher, logger: Logger, peer: Peer?, maxInFlight: Int, maxLineBytes: Int) {
        self.dispatcher = dispatcher
        self.logger = logger
        self.peer = peer
        self.maxInFlight = maxInFlight
        self.maxLineBytes = maxLineBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        guard slots.count < maxInFlight, waiting.isEmpty else {
            waiting.append(frame)
            return
        }
        dispatch(frame, context: context)
    }

    /// Takes a slot for `frame` and starts its answer.
    private func dispatch(_ frame: LineFrame, context: ChannelHandlerContext) {
        let sequence = headSequence + UInt64(slots.count)
        slots.append(nil)
        let allocator = context.channel.allocator
        guard !quiescing else {
            fill(sequence, with: dispatcher.failure(ProtocolError(.shuttingDown, "routerd is shutting down"), allocator: allocator), context: context)
            return
        }
        switch frame {
        case .tooLong:
            let error = ProtocolError(
                .lineTooLong, "request line exceeds limits.max_line_bytes (\(maxLineBytes) bytes); the rest of the line was discarded")
            fill(sequence, with: dispatcher.failure(error, allocator: allocator), context: context)
        case .line(let line):
            switch dispatcher.handle(line, peer: peer, allocator: allocator, eventLoop: context.eventLoop) {
            case .now(let reply):
                fill(sequence, with: reply, context: context)
            case .later(let future):
                let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                future.hop(to: context.eventLoop).whenComplete { result in
                    let (handler, context) = bound.value
                    let reply: ByteBuffer
                    switch result {
                    case .success(let buffer): reply = buffer
                    case .failure(let error):
                        reply = handler.dispatcher.failure(ProtocolError(.internalError, "\(error)"), allocator: context.channel.allocator)
                    }
                    handler.fill(sequence, with: reply, context: context)
                    handler.flushIfNeeded(context: context)
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context: context)
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if slots.count >= maxInFlight || !context.channel.isWritable {
            heldRead = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfPossible(context: context)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            closing = true
            if slots.isEmpty, waiting.isEmpty { context.close(promise: nil) }
        } else if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent all it will send; it still reads the replies.
            closing = true
            if slots.isEmpty, waiting.isEmpty { context.close(promise: nil) }
        } else if event is IdleStateHandler.IdleStateEvent {
            // Idle: nothing read for the configured time. Keep the connection while replies are pending.
            if slots.isEmpty, waiting.isEmpty { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A broken connection is the client's business, but say why it was dropped.
        logger.warning(
            "closing a connection after an error", metadata: ["error": "\(error)", "pending": "\(slots.count)", "peer_pid": "\(peer?.pid ?? 0)"])
        context.close(promise: nil)
    }

    private func fill(_ sequence: UInt64, with reply: ByteBuffer, context: ChannelHandlerContext) {
        slots[slots.index(slots.startIndex, offsetBy: Int(sequence - headSequence))] = reply
        while let first = slots.first, let ready = first {
            slots.removeFirst()
            headSequence += 1
            context.write(wrapOutboundOut(ready), promise: nil)
            needsFlush = true
        }
        if !draining {
            draining = true
            while slots.count < maxInFlight, !waiting.isEmpty { dispatch(waiting.removeFirst(), context: context) }
            draining = false
        }
        if slots.isEmpty, waiting.isEmpty, closing {
            // Close only after the replies written above have left.
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in bound.value.close(promise: nil)
            }
            needsFlush = false
        }
        resumeReadingIfPossible(context: context)
    }

    private func flushIfNeeded(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
    }

    private func resumeReadingIfPossible(context: ChannelHandlerContext) {
        if heldRead, slots.count < maxInFlight, waiting.isEmpty, context.channel.isWritable {
            heldRead = false
            context.read()
        }
    }
}
