import CRouterPlugin
import ClassifierHead
import Foundation
import RouterPluginKit
import SafeTensors

/// The classifier router: RouteLLM's BERT role, played by a head on the frozen
/// shared embedding (see ``ClassifierHead``). The head classifies the prompt, not
/// the pair: it learned whether the stronger model of a battle wins, so any
/// strong/weak pair may be configured, and its score quantiles hold for all.
final class ClassifierRouter: RouterPlugin {
    static let name = "classifier"
    static let version = "1.0.0"

    private let head: ClassifierHead
    private let weightsPath: String
    private let encoder: String
    private let quantiles: [Double]?

    init(context: PluginContext) throws {
        let (head, file, path) = try context.loadWeights(
            parameter: "weights", plugin: "classifier", decode: ClassifierHead.init(file:), dimension: \.embeddingDimension)
        self.head = head
        encoder = file.metadata["encoder"] ?? "unknown"
        weightsPath = path
        quantiles = file.metadataJSON("score_quantiles", as: [Double].self)
    }

    func score(_ prompt: Prompt) throws -> Double {
        guard let embedding = prompt.embedding, embedding.count == head.embeddingDimension else {
            throw PluginError("no prompt embedding arrived; the classifier router needs an encoder")
        }
        return head.strongWinProbability(embedding)
    }

    func describe() -> String? {
        var object: [String: Any] = ["weights": weightsPath, "hidden": head.hidden, "encoder": encoder, "classes": ClassifierHead.classes]
        if let quantiles { object["score_quantiles"] = quantiles }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) }
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(ClassifierRouter.self, hostABI: hostABI, into: out, size: size)
}
