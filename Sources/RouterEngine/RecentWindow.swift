/// The last ``RouterActivity/window`` values of one measure, for nearest-rank quantiles: the
/// decisions' scores and latencies in `stats`, and the fleet's replication lag.
public struct RecentWindow: Sendable {
    private var values: [Double] = []
    private var next = 0

    public init() {}

    public mutating func append(_ value: Double) {
        if values.count < RouterActivity.window {
            values.append(value)
        } else {
            values[next] = value
        }
        next = (next + 1) % RouterActivity.window
    }

    public func quantiles(_ wanted: [String: Double]) -> [String: Double] {
        guard !values.isEmpty else { return [:] }
        let sorted = values.sorted()
        return wanted.mapValues { sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count) * $0).rounded(.up)) - 1))] }
    }
}
