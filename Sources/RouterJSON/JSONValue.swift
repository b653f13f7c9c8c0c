import Foundation

/// Any JSON value: for the free-form parts of otherwise typed data (what a
/// plugin says about its instance, `details` on the wire).
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    /// A number written without a fraction or exponent that fits in 64 bits.
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Through a `Decoder` (a socket request's message `content`). The API cannot ask a value's
    /// kind, so each kind is tried in turn, and each miss throws; a string, the commonest value
    /// here, is tried first (no other kind decodes as one, nor it as another). Whole documents go
    /// through ``parse(_:)`` instead.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let text = try? container.decode(String.self) {
            self = .string(text)
        } else if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let number = try? container.decode(Int64.self) {
            self = .integer(number)
        } else if let number = try? container.decode(Double.self) {
            self = .number(number)
        } else if let elements = try? container.decode([JSONValue].self) {
            self = .array(elements)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let flag): try container.encode(flag)
        case .integer(let number): try container.encode(number)
        case .number(let number): try container.encode(number)
        case .string(let text): try container.encode(text)
        case .array(let elements): try container.encode(elements)
        case .object(let members): try container.encode(members)
        }
    }

    /// Parses one JSON document (RFC 8259; any value at the top), with Foundation's
    /// JSONSerialization. Not through `Decodable`: that tries each kind in turn, and each miss
    /// throws a DecodingError with its coding path, which made a chat completion's body cost
    /// several times its parse (the gateway parses two per request).
    public static func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            let reason = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
            throw JSONParseError(reason ?? "\(error)")
        }
        return JSONValue(serialized: parsed)
    }

    /// JSONSerialization's tree as a value. Its numbers are NSNumbers: booleans have the type
    /// code `c` (it makes no other char numbers), integers that fit in 64 bits a signed integer
    /// code, and the rest doubles or, with many digits, decimals.
    private init(serialized value: Any) {
        switch value {
        case let text as String:
            self = .string(text)
        case let members as [String: Any]:
            self = .object(members.mapValues(JSONValue.init(serialized:)))
        case let elements as [Any]:
            self = .array(elements.map(JSONValue.init(serialized:)))
        case let number as NSNumber:
            self = JSONValue(number: number)
        default:
            self = .null
        }
    }

    private init(number: NSNumber) {
        if let decimal = number as? NSDecimalNumber {
            // JSONSerialization keeps a number of many digits (17 significant, past Int64) as a
            // decimal, whose `doubleValue` is not correctly rounded (3.1415937311508433 came back
            // 2 ulps off). Its text is the number's exact digits, and `Double(String)` rounds
            // correctly, so a double written with its shortest digits reads back bit for bit.
            let integer = decimal.int64Value
            if decimal.compare(NSDecimalNumber(value: integer)) == .orderedSame {
                self = .integer(integer)
            } else {
                self = .number(Double(decimal.stringValue) ?? decimal.doubleValue)
            }
            return
        }
        switch UInt8(bitPattern: number.objCType.pointee) {
        case UInt8(ascii: "c"), UInt8(ascii: "B"): self = .bool(number.boolValue)
        case UInt8(ascii: "s"), UInt8(ascii: "i"), UInt8(ascii: "l"), UInt8(ascii: "q"): self = .integer(number.int64Value)
        case UInt8(ascii: "S"), UInt8(ascii: "I"), UInt8(ascii: "L"), UInt8(ascii: "Q"):
            let unsigned = number.uint64Value
            self = unsigned <= UInt64(Int64.max) ? .integer(Int64(unsigned)) : .number(number.doubleValue)
        default: self = .number(number.doubleValue)
        }
    }

    /// Compact JSON text, object keys sorted.
    public var text: String {
        var writer = JSONWriter()
        writer.value(self)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// The members, when this is an object.
    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The number, when this is one (integer or not).
    public var doubleValue: Double? {
        switch self {
        case .integer(let number): return Double(number)
        case .number(let number): return number
        default: return nil
        }
    }

    /// The integer, when this is a number with an exact integer value.
    public var integerValue: Int64? {
        switch self {
        case .integer(let number): return number
        case .number(let number): return Int64(exactly: number)
        default: return nil
        }
    }

    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }
}

/// Text that is not one JSON document; the message says where and why.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
