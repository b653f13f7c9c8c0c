import Foundation

/// A parameter a plugin accepts, as its descriptor declares it.
public struct ParamSpec: Sendable {
    public enum ValueType: String, Sendable, CaseIterable {
        case string, int, float, bool
        /// A file path; relative paths resolve against the config file's folder.
        case path
    }

    public var name: String
    public var type: ValueType
    public var required: Bool
    public var defaultValue: ParamValue?
    public var description: String
}

/// A plugin's descriptor, `plugins/<name>/plugin.yaml`.
public struct PluginDescriptor: Sendable {
    public var name: String
    /// The descriptor file this was read from.
    public var file: String
    /// The `library` value as written.
    public var library: String
    /// The absolute path of the library that was found.
    public var libraryPath: String
    public var abiVersion: Int
    public var version: String
    public var description: String
    /// Whether instances of this plugin need a prompt embedding.
    public var needsEmbedding: Bool
    /// Whether scoring waits on I/O (a network call): the daemon then calls the
    /// plugin on its I/O thread pool, so waiting holds neither an event loop nor
    /// the threads that run the encoder.
    public var ioBound: Bool
    /// Whether instances learn online from reported outcomes (ABI revision 3's `learn`).
    public var learnsOnline: Bool = false
    public var params: [ParamSpec]

    /// The files a router's parameters name (those of type `path`), ordered by parameter name.
    public func files(in params: [String: ParamValue]) -> [String] {
        let pathParams = Set(self.params.filter { $0.type == .path }.map(\.name))
        return params.filter { pathParams.contains($0.key) }.sorted { $0.key < $1.key }.map { "\($0.value)" }
    }

    static let keys: Set<String> = ["name", "library", "abi_version", "version", "description", "embedding", "io_bound", "learns_online", "params"]
    static let paramKeys: Set<String> = ["type", "required", "default", "description"]

    /// Reads and validates a descriptor; returns nil after reporting every problem.
    static func read(
        file: String, hostABIVersion: Int, libraryDirectories: [String], _ diagnostics: Diagnostics
    ) -> PluginDescriptor? {
        let before = diagnostics.issues.count
        guard let root = readYAML(file: file, diagnostics) else { return nil }
        let fields = root.fields("plugin descriptor", allowed: keys, diagnostics)
        func required(_ key: String) -> YAMLNode? {
            if let node = fields[key] { return node }
            diagnostics.report("missing required key '\(key)' in plugin descriptor", at: root.mark)
            return nil
        }
        let name = required("name")?.string("name", diagnostics)
        let library = required("library")?.string("library", diagnostics)
        let abiVersion = required("abi_version")?.int("abi_version", diagnostics)
        if let abiVersion, abiVersion != hostABIVersion {
            diagnostics.report(
                "abi_version \(abiVersion) does not match this routerd's plugin ABI version \(hostABIVersion); rebuild the plugin against this router_plugin.h",
                at: fields["abi_version"])
        }
        let version = fields["version"]?.string("version", diagnostics) ?? "0"
        let description = fields["description"]?.string("description", diagnostics) ?? ""
        var needsEmbedding = false
        if let node = fields["embedding"] {
            switch node.string("embedding", diagnostics) {
            case "required": needsEmbedding = true
            case "none": needsEmbedding = false
            case let other?: diagnostics.report("embedding must be 'required' or 'none', found '\(other)'", at: node)
            case nil: break
            }
        }
        let ioBound = fields["io_bound"]?.bool("io_bound", diagnostics) ?? false
        let learnsOnline = fields["learns_online"]?.bool("learns_online", diagnostics) ?? false
        var params: [ParamSpec] = []
        for (paramName, keyNode, specNode) in fields["params"]?.entries("params", diagnostics) ?? [] {
            if let spec = readParam(name: paramName, keyNode: keyNode, specNode, diagnostics) { params.append(spec) }
        }

        var libraryPath: String?
        if let library {
            let folder = (file as NSString).deletingLastPathComponent
            let candidates =
                library.hasPrefix("/") ? [library] : ([folder] + libraryDirectories).map { ($0 as NSString).appendingPathComponent(library) }
            libraryPath = candidates.first { FileManager.default.isReadableFile(atPath: $0) }
            if let found = libraryPath, let problem = TrustedFile.problem(found) {
                diagnostics.report("refusing plugin library \(found): \(problem)", at: fields["library"])
            }
            if libraryPath == nil {
                let looked = candidates.joined(separator: ", ")
                diagnostics.report(
                    "plugin library '\(library)' not found (looked for: \(looked)); build it with `swift build` or correct 'library'",
                    at: fields["library"])
            }
        }
        guard diagnostics.issues.count == before, let name, let library, let libraryPath, let abiVersion else { return nil }
        return PluginDescriptor(
            name: name, file: file, library: library, libraryPath: libraryPath, abiVersion: abiVersion,
            version: version, description: description, needsEmbedding: needsEmbedding, ioBound: ioBound, learnsOnline: learnsOnline,
            params: params)
    }

    private static func readParam(name: String, keyNode: YAMLNode, _ node: YAMLNode, _ diagnostics: Diagnostics) -> ParamSpec? {
        let fields = node.fields("parameter '\(name)'", allowed: paramKeys, diagnostics)
        guard let typeNode = fields["type"] else {
            diagnostics.report("parameter '\(name)' needs a 'type' (one of: \(typeNames))", at: keyNode)
            return nil
        }
        guard let typeName = typeNode.string("type", diagnostics) else { return nil }
        guard let type = ParamSpec.ValueType(rawValue: typeName) else {
            diagnostics.report("unknown parameter type '\(typeName)' (known types: \(typeNames))", at: typeNode)
            return nil
        }
        let required = fields["required"]?.bool("required", diagnostics) ?? false
        let defaultValue = fields["default"].flatMap {
            ParamSpec.convert($0, to: type, context: "default of '\(name)'", relativeTo: nil, diagnostics)
        }
        let description = fields["description"]?.string("description", diagnostics) ?? ""
        return ParamSpec(name: name, type: type, required: required, defaultValue: defaultValue, description: description)
    }

    private static var typeNames: String { ParamSpec.ValueType.allCases.map(\.rawValue).joined(separator: ", ") }

    /// Checks a router's parameters against this descriptor: unknown keys, wrong
    /// types and missing required values are reported; defaults are filled in.
    func validate(params node: YAMLNode?, router: String, at routerNode: YAMLNode, configFolder: String, _ diagnostics: Diagnostics)
        -> [String: ParamValue]
    {
        let allowed = Set(params.map(\.name))
        let given = node?.fields("params of router '\(router)' (plugin '\(name)')", allowed: allowed, diagnostics) ?? [:]
        var values: [String: ParamValue] = [:]
        for spec in params {
            if let valueNode = given[spec.name] {
                if let value = ParamSpec.convert(
                    valueNode, to: spec.type, context: "parameter '\(spec.name)' of router '\(router)'", relativeTo: configFolder, diagnostics)
                {
                    values[spec.name] = value
                }
            } else if let value = spec.defaultValue {
                values[spec.name] = value
            } else if spec.required {
                diagnostics.report(
                    "router '\(router)' is missing required parameter '\(spec.name)' (\(spec.type.rawValue)) of plugin '\(name)'",
                    at: node ?? routerNode)
            }
        }
        return values
    }
}

extension ParamSpec {
    static func convert(_ node: YAMLNode, to type: ValueType, context: String, relativeTo folder: String?, _ diagnostics: Diagnostics) -> ParamValue?
    {
        switch type {
        case .string: return node.string(context, diagnostics).map(ParamValue.string)
        case .int: return node.int(context, diagnostics).map(ParamValue.int)
        case .float: return node.double(context, diagnostics).map(ParamValue.float)
        case .bool: return node.bool(context, diagnostics).map(ParamValue.bool)
        case .path:
            guard let path = node.string(context, diagnostics) else { return nil }
            guard let folder, !path.hasPrefix("/") else { return .string(path) }
            return .string(((folder as NSString).appendingPathComponent(path) as NSString).standardizingPath)
        }
    }
}

/// Reads and parses a YAML file, reporting an unreadable file or a syntax error.
func readYAML(file: String, _ diagnostics: Diagnostics) -> YAMLNode? {
    guard let data = FileManager.default.contents(atPath: file) else {
        let reason = FileManager.default.fileExists(atPath: file) ? "cannot be read (check its permissions)" : "does not exist"
        diagnostics.report("file \(reason)", at: nil as SourceMark?)
        return nil
    }
    guard let text = String(data: data, encoding: .utf8) else {
        diagnostics.report("file is not valid UTF-8", at: nil as SourceMark?)
        return nil
    }
    do {
        return try YAMLParser.parse(text)
    } catch {
        diagnostics.report("YAML syntax error: \(error.message)", at: error.mark)
        return nil
    }
}
