import NIOCore
import NIOTestUtils
import Testing

@testable import RouterDaemon

/// The framing, under NIO's verifier: it feeds every input whole, byte by byte and
/// in random chunks, and checks the decoder yields the same frames each way.
@Suite struct LineFrameDecoderTests {
    @Test func linesAreFramedTheSameHoweverTheBytesArrive() throws {
        try ByteToMessageDecoderVerifier.verifyDecoder(
            stringInputOutputPairs: [
                (#"{"op":"health"}"# + "\n", [.line(ByteBuffer(string: #"{"op":"health"}"#))]),
                // CRLF ends a line too, and several lines may arrive at once.
                ("a\r\nb\n", [.line(ByteBuffer(string: "a")), .line(ByteBuffer(string: "b"))]),
                // Blank lines are skipped, so a person can type requests into socat.
                ("\n  \n\t\n", []),
                // Exactly the limit is a line; one byte more is reported once, and its bytes dropped.
                (String(repeating: "x", count: 16) + "\n", [.line(ByteBuffer(string: String(repeating: "x", count: 16)))]),
                (String(repeating: "y", count: 40) + "\nnext\n", [.tooLong, .line(ByteBuffer(string: "next"))]),
            ],
            decoderFactory: { LineFrameDecoder(maxLength: 16) })
    }
}
