import RouterVocabulary
import SafeTensors

extension PluginContext {
    /// The weights file of a plugin that scores embeddings: the path in parameter
    /// `parameter`, read as safetensors and decoded by `decode`, whose embedding
    /// dimension must be the router's encoder's. Every failure is a
    /// ``PluginError`` the operator can act on; `routerd` shows it at load.
    public func loadWeights<Model>(
        parameter: String, plugin: String, decode: (SafeTensorsFile) throws -> Model, dimension: (Model) -> Int
    ) throws -> (model: Model, file: SafeTensorsFile, path: String) {
        guard let path = params.string(parameter) else { throw PluginError("missing parameter '\(parameter)'") }
        let file: SafeTensorsFile
        let model: Model
        do {
            file = try SafeTensorsFile(path: path)
            model = try decode(file)
        } catch let error as PluginError {
            throw error
        } catch {
            throw PluginError("\(error)")
        }
        let expected = try requireEncoder(plugin: plugin)
        guard dimension(model) == expected else {
            throw PluginError(
                "\(path) was made from \(dimension(model))-d embeddings (encoder '\(file.metadata["encoder"] ?? "unknown")'), but this router's encoder gives \(expected)-d"
            )
        }
        return (model, file, path)
    }
}

extension SafeTensorsFile {
    /// The score quantiles stored in this weights file for `pair` ([strong, weak]), or nil when
    /// there are none or they were computed for another pair. With `pair` nil, the quantiles
    /// hold for any pair (a head that classifies the prompt, not the pair).
    public func scoreQuantiles(forPair pair: [String]?) -> [Double]? {
        if let pair, metadataJSON(MetadataKey.quantilePair, as: [String].self) != pair { return nil }
        return metadataJSON(MetadataKey.scoreQuantiles, as: [Double].self)
    }
}
