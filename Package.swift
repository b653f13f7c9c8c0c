// swift-tools-version:6.0
import PackageDescription

/// Router plugins: each is a dynamic library built from `plugins/<name>/`,
/// next to its descriptor `plugins/<name>/plugin.yaml`.
let routerPlugins: [(product: String, directory: String, dependencies: [Target.Dependency])] = [
    ("RandomRouter", "random", ["StableHash"]),
    ("MatrixFactorizationRouter", "mf", ["SafeTensors"]),
    ("SimilarityWeightedRouter", "sw_ranking", ["SafeTensors", "SimilarityRanking"]),
    ("ClassifierRouter", "classifier", ["SafeTensors", "ClassifierHead"]),
    ("CausalLLMRouter", "causal_llm", []),
]

let package = Package(
    name: "llm-router",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "routerd", targets: ["routerd"]),
        .executable(name: "routerctl", targets: ["routerctl"]),
        .library(name: "RouterClient", targets: ["RouterClient"]),
    ]
        + routerPlugins.map { .library(name: $0.product, type: .dynamic, targets: [$0.product]) },
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/yaslab/CSV.swift.git", from: "2.5.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // The plugin ABI: one C header, shared by the host and every plugin.
        .target(name: "CRouterPlugin"),
        // The system libyaml (`libyaml-dev`).
        .systemLibrary(name: "CYaml", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),

        // OpenBLAS (`libopenblas-dev`): every matrix product of the encoder.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // The encoder's elementwise kernels (softmax, GELU, LayerNorm), vectorised per CPU.
        .target(name: "CEncoderKernels", cSettings: [.unsafeFlags(["-O3", "-ffast-math", "-fno-finite-math-only"])]),
        // The safetensors format: a validating memory-mapped reader and a writer.
        .target(name: "SafeTensors"),
        // The local sentence encoder: BERT tokenizer, MiniLM on OpenBLAS, long-text policies, cache.
        .target(name: "TextEncoder", dependencies: ["CBLAS", "CEncoderKernels", "SafeTensors"]),

        // RouteLLM's similarity-weighted ranking: the battle index and the Bradley–Terry fit,
        // shared by the `sw_ranking` plugin and its trainer.
        .target(name: "SimilarityRanking", dependencies: ["CBLAS", "SafeTensors"]),

        // The classifier router's head (RouteLLM's BERT role on a frozen encoder): weights and forward
        // pass, shared by the `classifier` plugin and its trainer.
        .target(name: "ClassifierHead", dependencies: ["CBLAS", "SafeTensors"]),

        // Router training: battles files, the on-disk embedding cache, the MF trainer.
        .target(
            name: "RouterTraining",
            dependencies: ["CBLAS", "SafeTensors", "RouterEvaluation", "SimilarityRanking", "ClassifierHead", "StableHash"]),

        // RouteLLM's evaluation: benchmark readers, APGR/CPT, plots.
        .target(name: "RouterEvaluation", dependencies: [.product(name: "CSV", package: "CSV.swift")]),

        // Daemon config and plugin descriptors: YAML with file:line:column errors.
        .target(name: "RouterConfig", dependencies: ["CYaml"]),
        // The wire protocol: request/response types, codec and error codes.
        .target(name: "RouterProtocol"),
        // Helpers for writing a plugin in Swift on top of the C ABI.
        .target(name: "RouterPluginKit", dependencies: ["CRouterPlugin", "SafeTensors"]),
        // FNV-1a: hashes that mean the same in every process (splits, decision log, seeded random).
        .target(name: "StableHash"),
        // Plugin loading, router instances, generations and the decision pipeline.
        .target(
            name: "RouterEngine",
            dependencies: [
                "CRouterPlugin", "RouterConfig", "RouterProtocol", "StableHash", "TextEncoder",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]),
        // The socket server: framing, connections, lifecycle, systemd integration.
        .target(
            name: "RouterDaemon",
            dependencies: [
                "RouterEngine", "RouterProtocol", "RouterConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]),
        // Prometheus metrics: the exposition of the daemon's counters and the loopback /metrics server.
        .target(
            name: "RouterMetrics",
            dependencies: [
                "RouterEngine", "RouterProtocol",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        // The client library used by routerctl and by local services.
        .target(
            name: "RouterClient",
            dependencies: [
                "RouterProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]),
        .executableTarget(
            name: "routerd",
            dependencies: [
                "RouterDaemon", "RouterConfig", "TextEncoder", "RouterMetrics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "routerctl",
            dependencies: [
                "RouterClient", "RouterProtocol", "RouterConfig", "TextEncoder", "RouterTraining", "SafeTensors", "RouterEvaluation", "RouterEngine",
                "SimilarityRanking", "ClassifierHead", "StableHash",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ]),

        .testTarget(name: "RouterConfigTests", dependencies: ["RouterConfig"]),
        .testTarget(name: "TextEncoderTests", dependencies: ["TextEncoder"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"]),
        .testTarget(name: "StableHashTests", dependencies: ["StableHash"]),
        .testTarget(name: "RouterEvaluationTests", dependencies: ["RouterEvaluation"]),
        .testTarget(name: "RouterTrainingTests", dependencies: ["RouterTraining"]),
        .testTarget(name: "SimilarityRankingTests", dependencies: ["SimilarityRanking", "SafeTensors"]),
        .testTarget(name: "RouterProtocolTests", dependencies: ["RouterProtocol"]),
        .testTarget(
            name: "RouterdIntegrationTests",
            dependencies: ["RouterClient", "RouterProtocol", "SafeTensors", "routerd", "routerctl"],
            exclude: ["ExternalPlugin"]),
    ]
        + routerPlugins.map {
            .target(
                name: $0.product, dependencies: ["RouterPluginKit"] + $0.dependencies, path: "plugins/\($0.directory)",
                exclude: ["plugin.yaml"])
        }
)
