import Foundation
import Logging
import NIOCore

/// Pauses accepting for a moment when accepting fails for want of descriptors or memory (the
/// socket's listener and the gateway's).
///
/// Out of descriptors (EMFILE, ENFILE), `accept` fails while the connection stays queued, so the
/// listening socket stays readable and the event loop would retry at full speed. NIO's
/// `AcceptBackoffHandler` delays the next `read`, but NIOPosix asks for one only after an accept
/// succeeded in the same turn: when the very first accept of a turn fails, no `read` comes, the
/// socket keeps its read interest, and the loop spins on one core (seen in CI, and every time
/// with connections arriving one at a time). Turning `autoRead` off drops the read interest
/// whatever the turn did; turning it back on after `pause` re-arms it. Queued clients wait in
/// the backlog, they are not lost.
public final class AcceptPauseHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = any Channel
    public typealias InboundOut = any Channel

    private let pause: TimeAmount
    private let logger: Logger
    private var resume: Scheduled<Void>?
    /// Pauses since the last accept that succeeded: the first is logged, the rest would repeat it.
    private var pausesInARow = 0

    public init(pause: TimeAmount, logger: Logger) {
        self.pause = pause
        self.logger = logger
    }

    /// The errors that time may cure; any other accept error is passed on (and closes the listener).
    static func isTransient(_ error: any Error) -> Bool {
        guard let error = error as? IOError else { return false }
        return [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if pausesInARow > 0 {
            logger.notice("accepting again after \(pausesInARow) pause(s)")
            pausesInARow = 0
        }
        context.fireChannelRead(data)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard Self.isTransient(error) else {
            context.fireErrorCaught(error)
            return
        }
        guard resume == nil else { return }
        if pausesInARow == 0 {
            logger.warning(
                "cannot accept a connection (\(error)); pausing accepts for \(pause.nanoseconds / 1_000_000) ms at a time until it can. Raise LimitNOFILE, or lower limits.max_connections below it"
            )
        }
        pausesInARow += 1
        let options = context.channel.syncOptions
        try? options?.setOption(.autoRead, value: false)
        resume = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: pause) { [self] in
            resume = nil
            try? options?.setOption(.autoRead, value: true)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        resume?.cancel()
        resume = nil
        context.fireChannelInactive()
    }
}
