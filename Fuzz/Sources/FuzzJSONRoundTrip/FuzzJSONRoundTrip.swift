import Foundation
import RouterJSON

/// The JSON writer as a round trip: a value built from the input bytes, written by `JSONWriter`,
/// must parse back (with `JSONValue.parse`) to the same value.
private struct Bytes {
    var rest: UnsafeBufferPointer<UInt8>.SubSequence
    mutating func next() -> UInt8? {
        guard let first = rest.first else { return nil }
        rest = rest.dropFirst()
        return first
    }
    mutating func take(_ count: Int) -> [UInt8] {
        let taken = Array(rest.prefix(count))
        rest = rest.dropFirst(taken.count)
        return taken
    }
}

private func value(_ bytes: inout Bytes, depth: Int) -> JSONValue {
    guard let kind = bytes.next() else { return .null }
    switch kind % 7 {
    case 0: return .null
    case 1: return .bool(kind & 0x80 != 0)
    case 2:
        let raw = bytes.take(8)
        return .integer(raw.reduce(Int64(0)) { $0 << 8 | Int64($1) })
    case 3:
        let raw = bytes.take(8)
        let number = Double(bitPattern: raw.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
        return number.isFinite ? .number(number) : .null
    case 4: return .string(String(decoding: bytes.take(Int(bytes.next() ?? 0) % 64), as: UTF8.self))
    case 5:
        guard depth < 8 else { return .null }
        return .array((0..<Int(bytes.next() ?? 0) % 5).map { _ in value(&bytes, depth: depth + 1) })
    default:
        guard depth < 8 else { return .null }
        var members: [String: JSONValue] = [:]
        for _ in 0..<Int(bytes.next() ?? 0) % 5 {
            let key = String(decoding: bytes.take(Int(bytes.next() ?? 0) % 16), as: UTF8.self)
            members[key] = value(&bytes, depth: depth + 1)
        }
        return .object(members)
    }
}

/// Equal as JSON: a number is a number whether it reads back as an integer or not (3.0 is 3).
private func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
    case (.object(let x), .object(let y)): return x.keys == y.keys && x.allSatisfy { same($0.value, y[$0.key]!) }
    default:
        if let x = a.doubleValue, let y = b.doubleValue {
            if case .integer(let i) = a, case .integer(let j) = b { return i == j }
            return x == y
        }
        return a == b
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONRoundTrip(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = Bytes(rest: UnsafeBufferPointer(start: data, count: size)[...])
    let original = value(&bytes, depth: 0)
    var writer = JSONWriter()
    writer.value(original)
    guard let parsed = try? JSONValue.parse(writer.bytes) else {
        preconditionFailure("the writer's output does not parse: \(String(decoding: writer.bytes, as: UTF8.self))")
    }
    precondition(same(parsed, original), "round trip changed \(original) into \(parsed)")
    return 0
}
