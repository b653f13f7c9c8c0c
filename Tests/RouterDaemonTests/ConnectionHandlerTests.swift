import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import RouterEngine
import RouterProtocol
import RouterdTestSupport
import Testing

@testable import RouterDaemon

/// One connection's handler on an EmbeddedChannel, with a real engine behind it.
@Suite(.timeLimit(.minutes(10))) struct ConnectionHandlerTests {
    /// A channel with a ConnectionHandler serving the seeded `random` router.
    static func channel(in directory: TemporaryDirectory, maxInFlight: Int = 8) throws -> (EmbeddedChannel, ServerCounters) {
        let logger = Logger(label: "connection-tests")
        let config = try directory.write("routerd.yaml", TestConfig.yaml(socket: directory.path + "/unused.sock"))
        let engine = try Engine(configFile: config, executableDirectory: Package.binDirectory, logger: logger)
        let reloader = Reloader(
            engine: engine, decisionLog: nil, feedback: nil, logger: logger)
        let counters = ServerCounters()
        let dispatcher = Dispatcher(
            engine: engine, reloader: reloader, counters: counters, socketPath: "unused", threadPool: .singleton, ioThreadPool: .singleton,
            adminThreadPool: .singleton)
        let channel = EmbeddedChannel(
            handler: ConnectionHandler(dispatcher: dispatcher, logger: logger, peer: nil, maxInFlight: maxInFlight, maxLineBytes: 64))
        try channel.connect(to: try SocketAddress(unixDomainSocketPath: directory.path + "/unused.sock")).wait()
        return (channel, counters)
    }

    static func reply(_ channel: EmbeddedChannel) throws -> [String: Any] {
        guard var buffer = try channel.readOutbound(as: ByteBuffer.self), let line = buffer.readString(length: buffer.readableBytes) else {
            throw HarnessError("no reply was written")
        }
        #expect(line.hasSuffix("\n"))
        return try JSON.object(line)
    }

    @Test func pipelinedRequestsAreAnsweredInOrderAndErrorsKeepTheConnection() throws {
        let directory = try TemporaryDirectory()
        let (channel, counters) = try Self.channel(in: directory)
        for line in [#"{"id":1,"op":"route","router":"random","prompt":"a"}"#, "{not json", #"{"id":3,"op":"route","router":"ghost","prompt":"b"}"#] {
            try channel.writeInbound(LineFrame.line(ByteBuffer(string: line)))
        }
        try channel.writeInbound(LineFrame.tooLong)
        try channel.writeInbound(LineFrame.line(ByteBuffer(string: #"{"id":5,"op":"health"}"#)))

        let first = try Self.reply(channel)
        #expect(first["id"] as? Int == 1 && first.ok)
        #expect(try Self.reply(channel).errorCode == "bad_json")
        let third = try Self.reply(channel)
        #expect(third["id"] as? Int == 3 && third.errorCode == "unknown_router")
        #expect(try Self.reply(channel).errorCode == "line_too_long")
        let fifth = try Self.reply(channel)
        #expect(fifth["id"] as? Int == 5 && fifth.ok)
        #expect(channel.isActive, "errors answer the line and keep the connection")
        // The server counts what crossed the connection; the engine counted the decision.
        #expect(counters.snapshot.requests[.route] == 2 && counters.snapshot.errors[.badJSON] == 1)
        _ = try channel.finish()
    }

    @Test func aClientThatStopsSendingIsAnsweredAndThenClosed() throws {
        let directory = try TemporaryDirectory()
        let (channel, _) = try Self.channel(in: directory)
        try channel.writeInbound(LineFrame.line(ByteBuffer(string: #"{"op":"health"}"#)))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(try Self.reply(channel).ok)
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }
}
