import CRouterPlugin
import ClassifierHead
import Foundation
import RouterJSON
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
        quantiles = file.scoreQuantiles(forPair: nil)
    }

    func score(_ prompt: Prompt) throws -> Double {
        guard let embedding = prompt.embedding, embedding.count == head.embeddingDimension else {
            throw PluginError("no prompt embedding arrived; the classifier router needs an encoder")
        }
        return head.strongWinProbability(embedding)
    }

    func describe() -> RouterDescription {
        RouterDescription(
            scoreQuantiles: quantiles, embeddingDimension: head.embeddingDimension,
            details: [
                "weights": .string(weightsPath), "hidden": .integer(Int64(head.hidden)), "encoder": .string(encoder),
                "classes": .array(ClassifierHead.classes.map(JSONValue.string)),
            ])
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(ClassifierRouter.self, hostABI: hostABI, into: out, size: size)
}
