import CYaml

/// A position in a YAML source, 1-based as editors show it.
public struct SourceMark: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// One node of a parsed YAML document, with the place it came from.
///
/// The tree is built from libyaml's event stream rather than its document
/// API so that every node keeps its own mark and duplicate keys can be
/// reported where they occur.
public struct YAMLNode: Sendable {
    public enum Kind: Sendable {
        /// A scalar. `plain` is false for quoted and block scalars, which are
        /// always strings; a plain scalar may be a number, a bool or null.
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        /// A mapping in document order. Keys are unique (checked at parse).
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    public var kind: Kind
    public var mark: SourceMark

    public init(kind: Kind, mark: SourceMark) {
        self.kind = kind
        self.mark = mark
    }

    /// True for an explicit null: empty plain scalar, `~` or `null`.
    public var isNull: Bool {
        if case .scalar(let text, plain: true) = kind {
            return text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL"
        }
        return false
    }

    /// A short name of the node's kind, for error messages.
    public var kindName: String {
        switch kind {
        case .scalar: return isNull ? "null" : "scalar"
        case .sequence: return "list"
        case .mapping: return "mapping"
        }
    }
}

/// A YAML syntax error, with the place libyaml reported.
public struct YAMLSyntaxError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var mark: SourceMark

    public var description: String { "\(mark): \(message)" }
}

/// Parses YAML text with the system libyaml into a ``YAMLNode`` tree.
public enum YAMLParser {
    /// Parses the first document of `text`. An empty document yields a null scalar.
    public static func parse(_ text: String) throws(YAMLSyntaxError) -> YAMLNode {
        var bytes = Array(text.utf8)
        if bytes.isEmpty { bytes = [0x0A] }
        let result: Result<YAMLNode, YAMLSyntaxError> = bytes.withUnsafeBufferPointer { buffer in
            var builder = TreeBuilder()
            return builder.run(buffer)
        }
        return try result.get()
    }
}

private struct TreeBuilder {
    /// Open collections, innermost last.
    private enum Frame {
        case sequence([YAMLNode], SourceMark, anchor: String?)
        case mapping([(key: YAMLNode, value: YAMLNode)], pendingKey: YAMLNode?, SourceMark, anchor: String?)
    }

    private var stack: [Frame] = []
    private var anchors: [String: YAMLNode] = [:]
    private var root: YAMLNode?

    mutating func run(_ buffer: UnsafeBufferPointer<UInt8>) -> Result<YAMLNode, YAMLSyntaxError> {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            return .failure(YAMLSyntaxError(message: "libyaml could not initialise a parser", mark: .init(line: 1, column: 1)))
        }
        defer { yaml_parser_delete(&parser) }
        yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)

        while true {
            var event = yaml_event_t()
            guard yaml_parser_parse(&parser, &event) == 1 else {
                return .failure(Self.syntaxError(parser))
            }
            defer { yaml_event_delete(&event) }
            let mark = SourceMark(line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return .success(root ?? YAMLNode(kind: .scalar("", plain: true), mark: mark))
            case YAML_DOCUMENT_END_EVENT:
                // Only the first document is read; the rest of the stream is ignored.
                if let root { return .success(root) }
            case YAML_SCALAR_EVENT:
                let scalar = event.data.scalar
                let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
                let plain = scalar.style == YAML_PLAIN_SCALAR_STYLE && scalar.tag == nil
                let node = YAMLNode(kind: .scalar(text, plain: plain), mark: mark)
                if let anchor = Self.string(scalar.anchor) { anchors[anchor] = node }
                if let error = add(node) { return .failure(error) }
            case YAML_ALIAS_EVENT:
                let name = Self.string(event.data.alias.anchor) ?? ""
                guard var node = anchors[name] else {
                    return .failure(YAMLSyntaxError(message: "unknown alias *\(name)", mark: mark))
                }
                node.mark = mark
                if let error = add(node) { return .failure(error) }
            case YAML_SEQUENCE_START_EVENT:
                stack.append(.sequence([], mark, anchor: Self.string(event.data.sequence_start.anchor)))
            case YAML_MAPPING_START_EVENT:
                stack.append(.mapping([], pendingKey: nil, mark, anchor: Self.string(event.data.mapping_start.anchor)))
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let frame = stack.popLast() else { continue }
                let node: YAMLNode
                let anchor: String?
                switch frame {
                case .sequence(let items, let start, let name):
                    node = YAMLNode(kind: .sequence(items), mark: start)
                    anchor = name
                case .mapping(let pairs, _, let start, let name):
                    node = YAMLNode(kind: .mapping(pairs), mark: start)
                    anchor = name
                }
                if let anchor { anchors[anchor] = node }
                if let error = add(node) { return .failure(error) }
            default:
                continue
            }
        }
    }

    /// Adds a finished node to the innermost open collection, or makes it the root.
    private mutating func add(_ node: YAMLNode) -> YAMLSyntaxError? {
        guard let top = stack.popLast() else {
            if root == nil { root = node }
            return nil
        }
        switch top {
        case .sequence(var items, let mark, let anchor):
            items.append(node)
            stack.append(.sequence(items, mark, anchor: anchor))
        case .mapping(var pairs, let pendingKey, let mark, let anchor):
            if let key = pendingKey {
                pairs.append((key, node))
                stack.append(.mapping(pairs, pendingKey: nil, mark, anchor: anchor))
            } else {
                if case .scalar(let text, _) = node.kind,
                    let first = pairs.first(where: { if case .scalar(let other, _) = $0.key.kind { return other == text } else { return false } })
                {
                    return YAMLSyntaxError(message: "duplicate key '\(text)' (first defined at line \(first.key.mark.line))", mark: node.mark)
                }
                stack.append(.mapping(pairs, pendingKey: node, mark, anchor: anchor))
            }
        }
        return nil
    }

    private static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let pointer else { return nil }
        return String(cString: pointer)
    }

    private static func syntaxError(_ parser: yaml_parser_t) -> YAMLSyntaxError {
        let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
        var message = problem
        if let context = parser.context.map({ String(cString: $0) }) {
            message = "\(problem) \(context) at line \(parser.context_mark.line + 1)"
        }
        let mark = SourceMark(line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1)
        return YAMLSyntaxError(message: message, mark: mark)
    }
}
