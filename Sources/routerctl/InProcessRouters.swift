import ArgumentParser
import OfflineEvaluation
import RouterEngine

extension InProcessRouters {
    /// The config's routers, or exit 1 with the config's problems.
    static func load(config: String, command: String) throws -> Generation {
        do {
            return try load(config: config)
        } catch {
            printError("routerctl \(command): \(config):\n  " + error.problems.joined(separator: "\n  "))
            throw ExitCode(1)
        }
    }
}
