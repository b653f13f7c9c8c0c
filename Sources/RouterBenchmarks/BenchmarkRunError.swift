/// Why a benchmark, soak or learning run could not start or go on, in words an operator can act on.
public struct BenchmarkRunError: Error, CustomStringConvertible, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
