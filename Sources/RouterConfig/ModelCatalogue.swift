import Foundation

/// The models a daemon may route to, with their prices: the cost axis of every
/// cost-aware policy.
///
/// In `routerd.yaml` it is the `models:` section, either inline or as the path of
/// a file whose own `models:` holds the entries. `../shared/data/prices.yaml` has
/// that shape, so a price list is already a catalogue; `etc/routerd/models.yaml`
/// is the one shipped.
public struct ModelCatalogue: Sendable, Hashable {
    /// An OpenAI-compatible endpoint serving a model (used by `routerctl label`, never by routing).
    public struct Endpoint: Sendable, Hashable {
        public var baseURL: String
        /// The model name the endpoint expects.
        public var model: String
        /// The environment variable holding the API key, if the endpoint needs one.
        public var apiKeyEnvironment: String?
        /// The longest answer to ask this model for, in tokens (`routerctl label`); nil: the command's default.
        public var maxTokens: Int? = nil
    }

    public struct Model: Sendable, Hashable {
        public var name: String
        /// Other names that mean this model, e.g. a provider-prefixed spelling.
        public var aliases: [String]
        /// USD per million prompt tokens.
        public var inputPrice: Double
        /// USD per million output tokens.
        public var outputPrice: Double
        /// The output length a cost estimate assumes, in tokens.
        public var outputTokens: Int
        public var endpoint: Endpoint?

        /// The expected cost in USD of answering a prompt of `promptTokens` tokens.
        public func expectedCost(promptTokens: Int) -> Double {
            (Double(promptTokens) * inputPrice + Double(outputTokens) * outputPrice) / 1_000_000
        }

        /// What ranks models from cheap to dear: the expected cost of a typical prompt.
        public var nominalCost: Double { expectedCost(promptTokens: ModelCatalogue.nominalPromptTokens) }
    }

    /// The output length assumed when a model's entry gives none: RouterBench-style
    /// evaluations of the shared data assume 256.
    public static let defaultOutputTokens = 256
    /// The prompt length that ranks models by price (``Model/nominalCost``).
    public static let nominalPromptTokens = 256

    /// Entries by canonical name.
    public private(set) var models: [String: Model]
    /// Every name and alias → canonical name.
    private var names: [String: String]
    /// The file the entries came from (absolute), when it is not the config itself.
    public var file: String?

    public init(models: [Model] = [], file: String? = nil) {
        self.models = [:]
        self.names = [:]
        self.file = file
        for model in models {
            self.models[model.name] = model
            for name in [model.name] + model.aliases { names[name] = model.name }
        }
    }

    public var isEmpty: Bool { models.isEmpty }

    /// The entry a name or alias means.
    public func model(named name: String) -> Model? { names[name].flatMap { models[$0] } }

    /// Every name and alias, sorted: what an error lists as known.
    public var knownNames: [String] { names.keys.sorted() }

    /// A prompt's token count as cost estimates reckon it: one token per four characters,
    /// at least one. The estimate needs no tokenizer, which the models' own would be anyway.
    public static func estimatedTokens(_ prompt: String) -> Int { max(1, (prompt.unicodeScalars.count + 3) / 4) }
}

extension ConfigLoader {
    static let modelKeys: Set<String> = ["aliases", "input", "output", "output_tokens", "endpoint"]

    /// Reads `models:`, inline or from the file it names; problems go to the diagnostics of the file they are in.
    static func readCatalogue(_ node: YAMLNode, folder: String, _ diagnostics: Diagnostics) -> (ModelCatalogue, [ConfigIssue]) {
        if case .scalar = node.kind, let path = node.string("models", diagnostics) {
            let file = absolute(path, relativeTo: folder)
            let fileDiagnostics = Diagnostics(file: file)
            guard let root = readYAML(file: file, fileDiagnostics) else { return (ModelCatalogue(file: file), fileDiagnostics.issues) }
            let top = root.fields("model catalogue", allowed: ["models"], fileDiagnostics)
            guard let entries = top["models"] else {
                fileDiagnostics.report("a model catalogue needs a top-level 'models:' mapping", at: root)
                return (ModelCatalogue(file: file), fileDiagnostics.issues)
            }
            var catalogue = catalogueEntries(entries, fileDiagnostics)
            catalogue.file = file
            return (catalogue, fileDiagnostics.issues)
        }
        return (catalogueEntries(node, diagnostics), [])
    }

    private static func catalogueEntries(_ node: YAMLNode, _ diagnostics: Diagnostics) -> ModelCatalogue {
        var models: [ModelCatalogue.Model] = []
        var seen: [String: String] = [:]
        for (name, keyNode, value) in node.entries("models", diagnostics) {
            let context = "model '\(name)'"
            let fields = value.fields(context, allowed: modelKeys, diagnostics)
            func price(_ key: String) -> Double? {
                guard let priceNode = fields[key] else {
                    diagnostics.report("\(context) is missing '\(key)', its price in USD per million \(key) tokens", at: keyNode)
                    return nil
                }
                return priceNode.double("\(context): \(key)", in: 0...1_000_000, diagnostics)
            }
            let input = price("input")
            let output = price("output")
            let aliases = (fields["aliases"]?.list("\(context): aliases", diagnostics) ?? []).compactMap {
                $0.string("\(context): aliases entry", diagnostics)
            }
            for alias in [name] + aliases {
                if let owner = seen[alias] {
                    diagnostics.report("\(context): the name '\(alias)' is already used by model '\(owner)'", at: keyNode)
                }
                seen[alias] = name
            }
            var endpoint: ModelCatalogue.Endpoint?
            if let endpointNode = fields["endpoint"] {
                let endpointFields = endpointNode.fields(
                    "\(context): endpoint", allowed: ["base_url", "model", "api_key_env", "max_tokens"], diagnostics)
                if let baseURL = endpointFields["base_url"]?.string("\(context): endpoint.base_url", diagnostics) {
                    endpoint = ModelCatalogue.Endpoint(
                        baseURL: baseURL, model: endpointFields["model"]?.string("\(context): endpoint.model", diagnostics) ?? name,
                        apiKeyEnvironment: endpointFields["api_key_env"]?.string("\(context): endpoint.api_key_env", diagnostics),
                        maxTokens: endpointFields["max_tokens"]?.int("\(context): endpoint.max_tokens", in: 1...1_000_000, diagnostics))
                } else if endpointFields["base_url"] == nil {
                    diagnostics.report("\(context): endpoint needs 'base_url', e.g. http://127.0.0.1:8080/v1", at: endpointNode)
                }
            }
            let outputTokens =
                fields["output_tokens"]?.int("\(context): output_tokens", in: 1...10_000_000, diagnostics) ?? ModelCatalogue.defaultOutputTokens
            if let input, let output {
                models.append(
                    .init(name: name, aliases: aliases, inputPrice: input, outputPrice: output, outputTokens: outputTokens, endpoint: endpoint))
            }
        }
        return ModelCatalogue(models: models)
    }
}

extension ConfigLoader {
    /// Reads a catalogue file on its own (a file whose `models:` holds the entries), as `routerctl eval --prices` does.
    /// The `models:` of a routerd config (inline, or the file it names), without validating the
    /// rest of the config: what tools that call models (`routerctl label`) need. Empty when it has none.
    public static func catalogue(inConfig file: String) throws(ConfigError) -> ModelCatalogue {
        let path = absolute(file, relativeTo: FileManager.default.currentDirectoryPath)
        let diagnostics = Diagnostics(file: path)
        guard let root = readYAML(file: path, diagnostics) else { throw ConfigError(issues: diagnostics.issues) }
        guard let node = node(at: ["models"], in: root) else { return ModelCatalogue() }
        let (catalogue, issues) = readCatalogue(node, folder: (path as NSString).deletingLastPathComponent, diagnostics)
        let all = diagnostics.issues + issues
        guard all.isEmpty else { throw ConfigError(issues: all) }
        return catalogue
    }

    public static func loadCatalogue(file: String) throws(ConfigError) -> ModelCatalogue {
        let path = absolute(file, relativeTo: FileManager.default.currentDirectoryPath)
        let diagnostics = Diagnostics(file: path)
        let node = YAMLNode(kind: .scalar(path, plain: true), mark: SourceMark(line: 1, column: 1))
        let (catalogue, issues) = readCatalogue(node, folder: "/", diagnostics)
        let all = diagnostics.issues + issues
        guard all.isEmpty else { throw ConfigError(issues: all) }
        return catalogue
    }
}
