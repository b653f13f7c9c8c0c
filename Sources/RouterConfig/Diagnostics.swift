import Foundation

/// One problem found in a config or descriptor file.
public struct ConfigIssue: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var mark: SourceMark?
    public var message: String

    public init(file: String, mark: SourceMark?, message: String) {
        self.file = file
        self.mark = mark
        self.message = message
    }

    /// `file:line:column: message`, the form compilers and editors understand.
    public var description: String {
        if let mark { return "\(file):\(mark.line):\(mark.column): \(message)" }
        return "\(file): \(message)"
    }
}

/// Every problem found while loading a config, in file order.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var issues: [ConfigIssue]

    /// Keeps the issues of each file in line order, as a reader goes through the file.
    public init(issues: [ConfigIssue]) {
        self.issues = issues.enumerated().sorted { left, right in
            let (a, b) = (left.element, right.element)
            guard a.file == b.file else { return left.offset < right.offset }
            let aPlace = (a.mark?.line ?? 0, a.mark?.column ?? 0)
            let bPlace = (b.mark?.line ?? 0, b.mark?.column ?? 0)
            return aPlace == bPlace ? left.offset < right.offset : aPlace < bPlace
        }.map(\.element)
    }

    public var description: String { issues.map(\.description).joined(separator: "\n") }
}

/// Collects problems while a file is read, so one pass reports all of them.
final class Diagnostics {
    let file: String
    private(set) var issues: [ConfigIssue] = []

    init(file: String) { self.file = file }

    func report(_ message: String, at node: YAMLNode?) {
        issues.append(ConfigIssue(file: file, mark: node?.mark, message: message))
    }

    func report(_ message: String, at mark: SourceMark?) {
        issues.append(ConfigIssue(file: file, mark: mark, message: message))
    }
}

/// Typed reads of YAML nodes that report a precise problem instead of failing.
extension YAMLNode {
    /// The pairs of a mapping whose keys are all in `allowed`; reports unknown keys and a non-mapping node.
    func fields(_ context: String, allowed: Set<String>, _ diagnostics: Diagnostics) -> [String: YAMLNode] {
        guard case .mapping(let pairs) = kind else {
            if !isNull { diagnostics.report("\(context) must be a mapping, found a \(kindName)", at: self) }
            return [:]
        }
        var result: [String: YAMLNode] = [:]
        for (key, value) in pairs {
            guard case .scalar(let name, _) = key.kind else {
                diagnostics.report("\(context): keys must be strings", at: key)
                continue
            }
            if allowed.contains(name) {
                result[name] = value
            } else {
                let known = allowed.sorted().joined(separator: ", ")
                diagnostics.report("unknown key '\(name)' in \(context) (known keys: \(known))", at: key)
            }
        }
        return result
    }

    /// The ordered pairs of a mapping with string keys.
    func entries(_ context: String, _ diagnostics: Diagnostics) -> [(key: String, keyNode: YAMLNode, value: YAMLNode)] {
        guard case .mapping(let pairs) = kind else {
            if !isNull { diagnostics.report("\(context) must be a mapping, found a \(kindName)", at: self) }
            return []
        }
        return pairs.compactMap { pair in
            guard case .scalar(let name, _) = pair.key.kind else {
                diagnostics.report("\(context): keys must be strings", at: pair.key)
                return nil
            }
            return (name, pair.key, pair.value)
        }
    }

    func string(_ context: String, _ diagnostics: Diagnostics) -> String? {
        guard case .scalar(let text, _) = kind, !isNull else {
            diagnostics.report("\(context) must be a string, found a \(kindName)", at: self)
            return nil
        }
        return text
    }

    /// The string, if it is one of `allowed`; otherwise a problem naming them, and nil.
    func string(_ context: String, oneOf allowed: [String], _ diagnostics: Diagnostics) -> String? {
        guard let value = string(context, diagnostics) else { return nil }
        guard allowed.contains(value) else {
            diagnostics.report("\(context) must be one of \(allowed.joined(separator: ", ")), found '\(value)'", at: self)
            return nil
        }
        return value
    }

    /// The value of a vocabulary type whose name the string is; otherwise a problem naming them, and nil.
    func value<Value: RawRepresentable & CaseIterable>(_ context: String, _ diagnostics: Diagnostics) -> Value? where Value.RawValue == String {
        string(context, oneOf: Value.allCases.map(\.rawValue), diagnostics).flatMap(Value.init(rawValue:))
    }

    func int(_ context: String, in range: ClosedRange<Int>? = nil, _ diagnostics: Diagnostics) -> Int? {
        guard case .scalar(let text, plain: true) = kind, let value = Int(text.replacingUnderscores) else {
            diagnostics.report("\(context) must be an integer, found \(quoted)", at: self)
            return nil
        }
        if let range, !range.contains(value) {
            diagnostics.report("\(context) must be between \(range.lowerBound) and \(range.upperBound), found \(value)", at: self)
            return nil
        }
        return value
    }

    func double(_ context: String, in range: ClosedRange<Double>? = nil, _ diagnostics: Diagnostics) -> Double? {
        guard case .scalar(let text, plain: true) = kind, let value = Double(text.replacingUnderscores), value.isFinite else {
            diagnostics.report("\(context) must be a number, found \(quoted)", at: self)
            return nil
        }
        if let range, !range.contains(value) {
            diagnostics.report("\(context) must be between \(range.lowerBound) and \(range.upperBound), found \(value)", at: self)
            return nil
        }
        return value
    }

    /// An octal file mode such as 0660 (a socket's), or nil after reporting what was found.
    func fileMode(_ context: String, _ diagnostics: Diagnostics) -> UInt32? {
        if case .scalar(let text, _) = kind, let mode = UInt32(text, radix: 8), mode <= 0o777 { return mode }
        diagnostics.report("\(context) must be an octal file mode such as 0660, found \(quoted)", at: self)
        return nil
    }

    func bool(_ context: String, _ diagnostics: Diagnostics) -> Bool? {
        if case .scalar(let text, plain: true) = kind {
            switch text {
            case "true", "True", "TRUE", "yes", "Yes", "on": return true
            case "false", "False", "FALSE", "no", "No", "off": return false
            default: break
            }
        }
        diagnostics.report("\(context) must be true or false, found \(quoted)", at: self)
        return nil
    }

    /// A list of nodes; a single scalar is not accepted in its place.
    func list(_ context: String, _ diagnostics: Diagnostics) -> [YAMLNode] {
        guard case .sequence(let items) = kind else {
            if !isNull { diagnostics.report("\(context) must be a list, found a \(kindName)", at: self) }
            return []
        }
        return items
    }

    /// The node as it appears in the file, for messages.
    var quoted: String {
        switch kind {
        case .scalar(let text, let plain): return plain && isNull ? "null" : "'\(text)'"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        }
    }
}

extension String {
    fileprivate var replacingUnderscores: String { contains("_") ? replacingOccurrences(of: "_", with: "") : self }
}
