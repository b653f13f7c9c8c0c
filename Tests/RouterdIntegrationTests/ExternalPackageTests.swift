import Foundation
import RouterdTestSupport
import Testing

/// RouterPluginKit is a library product: a plugin package outside this tree depends on
/// this package by path, builds its plugin with `swift build`, and routerd routes through it.
@Suite(.timeLimit(.minutes(10))) struct ExternalPackageTests {
    @Test func aSwiftPluginInAPackageOfItsOwnLoadsAndRoutes() throws {
        let directory = try TemporaryDirectory()
        let package = directory.path + "/half-router"
        let sources = package + "/Sources/HalfRouter"
        try FileManager.default.createDirectory(atPath: sources, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: Package.root + "/Tests/RouterdIntegrationTests/ExternalPackage/HalfRouter.swift", toPath: sources + "/HalfRouter.swift")
        // A path dependency's identity is its folder's name.
        let identity = URL(fileURLWithPath: Package.root).lastPathComponent.lowercased()
        _ = try directory.write(
            "half-router/Package.swift",
            """
            // swift-tools-version:6.0
            import PackageDescription

            let package = Package(
                name: "half-router",
                products: [.library(name: "HalfRouter", type: .dynamic, targets: ["HalfRouter"])],
                dependencies: [.package(path: "\(Package.root)")],
                targets: [
                    .target(
                        name: "HalfRouter",
                        dependencies: [
                            .product(name: "RouterPluginKit", package: "\(identity)"),
                            .product(name: "CRouterPlugin", package: "\(identity)"),
                        ])
                ]
            )
            """)
        let swift = ["/opt/swift/usr/bin/swift", "/usr/bin/swift"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "swift"
        let build = try runCommand(swift, ["build", "--package-path", package, "--product", "HalfRouter"])
        try #require(build.status == 0, "swift build of the external package failed:\n\(build.stdout)\n\(build.stderr)")

        // Install it as routerd's operators would: the library beside its descriptor.
        let plugins = directory.path + "/plugins"
        try FileManager.default.createDirectory(atPath: plugins + "/half", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: package + "/.build/debug/libHalfRouter.so", toPath: plugins + "/half/libHalfRouter.so")
        _ = try directory.write(
            "plugins/half/plugin.yaml",
            """
            name: half
            library: libHalfRouter.so
            abi_version: 1
            version: 0.0.1
            description: A constant router from a package of its own.
            embedding: none
            params:
              score:
                type: float
                required: true
            """)
        let daemon = try Daemon(
            directory: directory,
            config: {
                TestConfig.yaml(
                    socket: $0,
                    routers: """
                          half:
                            plugin: half
                            strong_fraction: 0.5
                            strong_model: big
                            weak_model: small
                            params:
                              score: 0.75
                        """, searchPaths: [plugins])
            })
        let connection = try daemon.connect()
        let decision = try connection.request(#"{"op":"route","router":"half","prompt":"anything"}"#)
        #expect(decision.result["score"] as? Double == 0.75)
        // strong_fraction 0.5 took the middle of the quantiles the plugin described.
        #expect(decision.result["threshold"] as? Double == 0.75)
        #expect(decision.result["model"] as? String == "big")
        let routers = try #require(try connection.request(#"{"op":"routers"}"#).result["routers"] as? [[String: Any]])
        #expect((routers.first?["details"] as? [String: Any])?["origin"] as? String == "an external package")
    }
}
