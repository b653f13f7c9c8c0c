// A router plugin written in Swift in a package of its own, which depends on
// llm-router's RouterPluginKit product by path: what a third party does.
import CRouterPlugin
import RouterJSON
import RouterPluginKit

/// Scores every prompt with the `score` parameter, and says so in its description.
final class HalfRouter: RouterPlugin {
    static let name = "half"
    static let version = "0.0.1"

    private let score: Double

    init(context: PluginContext) throws {
        guard let score = context.params.double("score"), (0...1).contains(score) else { throw PluginError("score must be in [0, 1]") }
        self.score = score
    }

    func score(_ prompt: Prompt) throws -> Double { score }

    func describe() -> RouterDescription {
        RouterDescription(scoreQuantiles: [0, score, 1], details: ["origin": "an external package"])
    }
}

@_cdecl("routerd_plugin_entry")
public func routerdPluginEntry(_ hostABI: UInt32, _ out: UnsafeMutablePointer<rp_plugin>?, _ size: Int) -> Int32 {
    exportRouterPlugin(HalfRouter.self, hostABI: hostABI, into: out, size: size)
}
