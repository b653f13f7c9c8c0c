import NIOCore

/// What the line decoder hands on: a complete line, or notice that a line
/// exceeded the limit.
enum LineFrame: Equatable {
    /// One request line without its `\n` (and without a trailing `\r`).
    case line(ByteBuffer)
    /// A line longer than the limit. It is reported once, and its bytes are
    /// dropped as they arrive, never buffered whole.
    case tooLong
}

/// Splits the byte stream into `\n`-terminated lines of at most `maxLength`
/// bytes. NIO's own line decoder has no length limit, so this one adds it.
/// Blank lines are skipped, so a person can type requests into `socat`.
struct LineFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = LineFrame

    let maxLength: Int
    /// True while the rest of an oversized line is being dropped.
    private var discarding = false
    /// Bytes already searched for a newline, so a slowly arriving line is not rescanned.
    private var scanned = 0

    init(maxLength: Int) {
        self.maxLength = maxLength
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        guard let newline = view[(view.startIndex + scanned)...].firstIndex(of: UInt8(ascii: "\n")) else {
            if discarding {
                buffer.moveReaderIndex(to: buffer.writerIndex)
                scanned = 0
            } else if buffer.readableBytes > maxLength {
                discarding = true
                buffer.moveReaderIndex(to: buffer.writerIndex)
                scanned = 0
                context.fireChannelRead(wrapInboundOut(.tooLong))
            } else {
                scanned = buffer.readableBytes
            }
            return .needMoreData
        }
        scanned = 0
        let length = newline - view.startIndex
        if discarding {
            discarding = false
            buffer.moveReaderIndex(forwardBy: length + 1)
            return .continue
        }
        if length > maxLength {
            buffer.moveReaderIndex(forwardBy: length + 1)
            context.fireChannelRead(wrapInboundOut(.tooLong))
            return .continue
        }
        var line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
        if line.readableBytesView.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) {
            context.fireChannelRead(wrapInboundOut(.line(line)))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A final line without a newline is still a request.
        if !discarding, buffer.readableBytes > 0, let line = buffer.readSlice(length: buffer.readableBytes),
            line.readableBytesView.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") })
        {
            context.fireChannelRead(wrapInboundOut(.line(line)))
        }
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
