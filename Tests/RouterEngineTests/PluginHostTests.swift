import Foundation
import Logging
import RouterJSON
import RouterPluginHost
import RouterPluginKit
import RouterdTestSupport
import Testing

/// The ABI boundary checks what it is given before a pointer crosses it.
@Suite struct PluginHostTests {
    static func randomInstance(dimension: Int) throws -> PluginInstance {
        let library = try PluginLibrary.load(path: Package.binDirectory + "/libRandomRouter.so")
        return try PluginInstance(
            library: library, name: "r", paramsJSON: #"{"seed":3}"#, strongModel: "s", weakModel: "w", candidates: ["s", "w"],
            embeddingDimension: dimension,
            services: HostServices(logger: Logger(label: "host-tests"), embed: nil, count: { _ in }))
    }

    @Test func embeddingsThatDoNotFitThePromptsAreRefusedBeforeThePluginSeesThem() throws {
        let instance = try Self.randomInstance(dimension: 4)
        let vector: [Float] = [0.5, 0.5, 0.5, 0.5]
        // Right: one 4-d embedding per prompt.
        #expect(try instance.score(["a", "b"], embeddings: [vector, vector]).count == 2)
        #expect(try instance.score("a", embedding: vector) >= 0)
        // A short embedding would have made the plugin read past the end of the buffer.
        #expect(throws: PluginScoreError.self) { try instance.score(["a"], embeddings: [[0.5, 0.5]]) }
        #expect(throws: PluginScoreError.self) { try instance.score("a", embedding: [0.5, 0.5, 0.5]) }
        // Fewer embeddings than prompts would have made it read past the last vector.
        #expect(throws: PluginScoreError.self) { try instance.score(["a", "b"], embeddings: [vector]) }
        #expect(throws: PluginScoreError.self) { try instance.score(["a"], embeddings: nil) }
        do {
            _ = try instance.score(["a", "b"], embeddings: [vector, [1]])
            Issue.record("a wrong dimension must throw")
        } catch {
            #expect(error.message == "router 'r' needs 4-d embeddings, and one has 1")
        }
    }

    @Test func anInstanceWithoutAnEncoderTakesNoEmbeddings() throws {
        let instance = try Self.randomInstance(dimension: 0)
        #expect(try instance.score(["a"]).count == 1)
        #expect(throws: PluginScoreError.self) { try instance.score(["a"], embeddings: [[1]]) }
    }

    @Test func theDescriptionIsParsedOnceIntoTypedFields() throws {
        let instance = try Self.randomInstance(dimension: 0)
        #expect(instance.description.scoreQuantiles?.first == 0)
        #expect(instance.description.scoreQuantiles?.last == 1)
        #expect(instance.description.details["seed"] == .integer(3))
    }
}
