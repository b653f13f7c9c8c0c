/// A problem loading or running the encoder, naming the file and the fix.
public struct EncoderError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
