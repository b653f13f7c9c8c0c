// swift-tools-version:6.1
import PackageDescription

/// Router plugins: each is a dynamic library built from `plugins/<name>/`,
/// next to its descriptor `plugins/<name>/plugin.yaml`.
/// Each depends on `RouterPluginKit`, `CRouterPlugin` and `RouterJSON`, plus these.
let routerPlugins: [(product: String, directory: String, dependencies: [Target.Dependency])] = [
    ("RandomRouter", "random", ["StableHash"]),
    ("MatrixFactorizationRouter", "mf", ["SafeTensors", "MatrixFactorization", "RouterVocabulary"]),
    ("SimilarityWeightedRouter", "sw_ranking", ["SafeTensors", "SimilarityRanking"]),
    ("ClassifierRouter", "classifier", ["SafeTensors", "ClassifierHead", "QualityCorrection", "QualityModel", "RouterVocabulary", "StableHash"]),
    ("CausalLLMRouter", "causal_llm", []),
]

/// A plugin's target: its folder under plugins/, on the ABI, the kit and RouterJSON.
func pluginTarget(_ plugin: (product: String, directory: String, dependencies: [Target.Dependency])) -> Target {
    let common: [Target.Dependency] = ["CRouterPlugin", "RouterJSON", "RouterPluginKit"]
    return .target(name: plugin.product, dependencies: common + plugin.dependencies, path: "plugins/" + plugin.directory, exclude: ["plugin.yaml"])
}

// Products, dependencies and targets are typed constants rather than parts of one Package(...)
// expression: under swift-tools-version 6.1 (which package traits need) that one expression is more
// than the type checker finishes in reasonable time.
let products: [Product] =
    [
        .executable(name: "routerd", targets: ["routerd"]),
        .executable(name: "routerctl", targets: ["routerctl"]),
        .library(name: "RouterClient", targets: ["RouterClient"]),
        // For plugins written outside this package: the C ABI alone, or with the Swift kit.
        .library(name: "CRouterPlugin", targets: ["CRouterPlugin"]),
        .library(name: "RouterPluginKit", targets: ["RouterPluginKit"]),
        // The parsers every untrusted input goes through, for the fuzz targets in Fuzz/.
        .library(
            name: "RouterParsers",
            targets: ["OpenAIProtocol", "RouterProtocol", "RouterConfig", "SafeTensors", "TextEncoder", "RouterJSON", "RouterVocabulary"]),
    ]
    + routerPlugins.map { Product.library(name: $0.product, type: .dynamic, targets: [$0.product]) }

let dependencies: [Package.Dependency] = [
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    .package(url: "https://github.com/yaslab/CSV.swift.git", from: "2.5.2"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    // The gateway (trait `Gateway`): SwiftNIO's HTTP codec serves (HTTPServing), AsyncHTTPClient
    // calls the upstreams.
    .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
]

/// The gateway needs an HTTP server and client and their TLS stack, which a fresh debug build takes
/// minutes over. With the trait off (`--disable-default-traits`, as `make test-asan` builds), routerd is
/// built without the gateway and refuses a config that enables it.
let traits: Set<Trait> = [
    .trait(name: "Gateway", description: "routerd's OpenAI-compatible HTTP gateway (its HTTP server and AsyncHTTPClient)"),
    .default(enabledTraits: ["Gateway"]),
]
let gatewayTrait: TargetDependencyCondition? = .when(traits: ["Gateway"])

let targets: [Target] =
    [
        // The plugin ABI: one C header, shared by the host and every plugin.
        .target(name: "CRouterPlugin"),
        // The system libyaml (`libyaml-dev`).
        .systemLibrary(name: "CYaml", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),

        // OpenBLAS (`libopenblas-dev`): every matrix product of the encoder.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        // glibc's mallopt, for routerd's allocator settings (Sources/routerd/AllocatorSettings.swift).
        .systemLibrary(name: "CMalloc"),
        // The encoder's elementwise kernels (softmax, GELU, LayerNorm), vectorised per CPU.
        .target(name: "CEncoderKernels", cSettings: [.unsafeFlags(["-O3", "-ffast-math", "-fno-finite-math-only"])]),
        // The safetensors format: a validating memory-mapped reader and a writer.
        .target(name: "SafeTensors"),
        // JSON for the hot paths (a writer) and for free-form values (JSONValue).
        .target(name: "RouterJSON"),
        // FNV-1a and SplitMix64: hashes and draws that mean the same in every process.
        .target(name: "StableHash"),
        // The shared vocabulary: encoder settings (long-text policy, kernel, precision and their
        // rule), weights-file metadata keys, outcome names. A leaf, so config, wire, encoder,
        // models and engine agree without depending on each other.
        .target(name: "RouterVocabulary"),
        // The training-row formats (battles and quality JSON lines): one codec each, for the
        // feedback store and `routerctl label` that write them and the trainers and evaluation that read them.
        .target(name: "TrainingRows", dependencies: ["RouterJSON", "RouterVocabulary", "StableHash"]),
        // The local sentence encoder: BERT tokenizer, MiniLM on oneDNN (or OpenBLAS), precisions and their gate, long-text policies, cache, batcher.
        .target(name: "TextEncoder", dependencies: ["CBLAS", "CEncoderKernels", "CPackedLinear", "RouterVocabulary", "SafeTensors"]),
        // The encoder's linear layers on oneDNN (libdnnl-dev), weights packed once at load.
        .target(name: "CPackedLinear", dependencies: ["CEncoderKernels"], linkerSettings: [.linkedLibrary("dnnl")]),

        // Writing a plugin in Swift on top of the C ABI, and what plugins, trainers and the host
        // share: the typed description and the weights-file metadata keys.
        .target(name: "RouterPluginKit", dependencies: ["CRouterPlugin", "RouterJSON", "RouterVocabulary", "SafeTensors"]),
        // Hosting plugins: loading libraries, creating instances, every call across the C ABI, checked.
        .target(
            name: "RouterPluginHost",
            dependencies: [
                "CRouterPlugin", "RouterPluginKit", "RouterVocabulary",
                .product(name: "Logging", package: "swift-log"),
            ]),

        // The routers' models: each owns its weights format and maths, shared by its plugin and its trainer.
        // RouteLLM's matrix factorisation.
        .target(name: "MatrixFactorization", dependencies: ["RouterVocabulary", "SafeTensors"]),
        // RouteLLM's similarity-weighted ranking: the battle index and the Bradley–Terry fit.
        .target(name: "SimilarityRanking", dependencies: ["CBLAS", "RouterVocabulary", "SafeTensors", "StableHash"]),
        // The classifier router's head (RouteLLM's BERT role on a frozen encoder).
        .target(name: "ClassifierHead", dependencies: ["CBLAS", "RouterVocabulary", "SafeTensors"]),
        // Cheap surface features of a prompt (length, numbers, code, options), beside its embedding.
        .target(name: "PromptFeatures"),
        // Per-model quality from a prompt (the classifier for many candidates): format and maths.
        .target(name: "QualityModel", dependencies: ["CBLAS", "PromptFeatures", "RouterVocabulary", "SafeTensors"]),
        // What a quality model learns online from outcomes: ridge regressions of its residuals (a
        // shared difficulty and one correction per model), format and maths.
        .target(name: "QualityCorrection", dependencies: ["CBLAS", "SafeTensors", "StableHash"]),

        // OpenAI's chat-completions wire format as the gateway serves it: the request read for
        // routing and kept whole for the upstream, model names, errors, usage, streamed chunks.
        .target(name: "OpenAIProtocol", dependencies: ["RouterJSON", "RouterProtocol"]),
        // What the gateway does when an upstream call fails: which failures to retry, backoff with
        // jitter, the next candidate, the deadline, and cooling down models that keep failing.
        .target(name: "UpstreamFallback"),
        // An HTTP/1.1 server on SwiftNIO's codec: the gateway's listener and the stub upstream's.
        // Empty without the trait.
        .target(
            name: "HTTPServing",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras", condition: gatewayTrait),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras", condition: gatewayTrait),
                .product(name: "HTTPTypes", package: "swift-http-types", condition: gatewayTrait),
            ]),
        // The OpenAI-compatible gateway: HTTP in (HTTPServing), the engine's decision, the chosen
        // model called (AsyncHTTPClient) with fallback, the real cost counted. Empty without the trait.
        .target(
            name: "Gateway",
            dependencies: [
                "HTTPServing", "OpenAIProtocol", "RouterConfig", "RouterDaemon", "RouterEngine", "RouterJSON", "RouterProtocol",
                "UpstreamFallback",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: gatewayTrait),
                .product(name: "HTTPTypes", package: "swift-http-types", condition: gatewayTrait),
            ]),
        // A client of OpenAI-compatible endpoints, for `routerctl label`.
        .target(name: "OpenAIChat", dependencies: ["OpenAIProtocol"]),
        // `routerctl label`: training rows from models' answers, judged.
        .target(
            name: "Labelling",
            dependencies: [
                "OpenAIChat", "RouterConfig", "RouterJSON", "StableHash", "TrainingRows",
            ]),

        // Router training: training data, the on-disk embedding cache, the MF and classifier trainers.
        .target(
            name: "RouterTraining",
            dependencies: [
                "CBLAS", "ClassifierHead", "MatrixFactorization", "PromptFeatures", "QualityModel", "RouterVocabulary", "SafeTensors",
                "SimilarityRanking", "StableHash", "TextEncoder", "TrainingRows",
            ]),
        // RouteLLM's evaluation: benchmark readers, APGR/CPT, plots.
        .target(
            name: "RouterEvaluation",
            dependencies: ["CRSVG", "RouterConfig", "StableHash", "TrainingRows", .product(name: "CSV", package: "CSV.swift")]),
        // librsvg and cairo (`librsvg2-dev`): the evaluation's plots as PNG beside their SVG.
        .systemLibrary(name: "CRSVG", pkgConfig: "librsvg-2.0", providers: [.apt(["librsvg2-dev"])]),

        // Daemon config and plugin descriptors: YAML with file:line:column errors.
        .target(name: "RouterConfig", dependencies: ["CYaml", "RouterVocabulary", "UpstreamFallback"]),
        // The wire protocol: request/response types, codec and error codes.
        .target(name: "RouterProtocol", dependencies: ["RouterJSON", "RouterVocabulary"]),
        // Generations, router instances, encoders and the decision pipeline, in domain terms.
        .target(
            name: "RouterEngine",
            dependencies: [
                "RouterConfig", "RouterJSON", "RouterPluginHost", "RouterPluginKit", "RouterVocabulary", "StableHash", "TextEncoder",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The socket server: framing, connections, the dispatcher to the wire, reloads, lifecycle, systemd.
        .target(
            name: "RouterDaemon",
            dependencies: [
                "Fleet", "RouterConfig", "RouterEngine", "RouterJSON", "RouterProtocol", "RouterVocabulary", "StableHash", "TextEncoder",
                "TrainingRows",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]),
        // PostgreSQL's own client library (`libpq-dev`): TLS, SCRAM and multi-host failover as the
        // URL asks, with no TLS stack of ours to build (docs/OPERATIONS.md, "A fleet").
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // A fleet of daemons sharing outcomes through PostgreSQL: the outbox, its shipper and the tailer.
        .target(
            name: "Fleet",
            dependencies: [
                "CLibPQ", "RouterConfig", "RouterEngine", "RouterJSON", "RouterVocabulary",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Prometheus metrics: the exposition of the `stats` counters and the loopback /metrics server.
        .target(
            name: "RouterMetrics",
            dependencies: [
                "Fleet", "RouterDaemon", "RouterEngine", "RouterProtocol", "TextEncoder",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        // The client library used by routerctl and by local services.
        .target(
            name: "RouterClient",
            dependencies: [
                "RouterProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),
        // Routers built in-process from a config and evaluated offline: benchmarks, precision, the many-model cost sweep.
        .target(
            name: "OfflineEvaluation",
            dependencies: [
                "OffPolicy", "QualityModel", "RouterConfig", "RouterEngine", "RouterEvaluation", "RouterPluginHost", "RouterTraining",
                "RouterVocabulary", "TextEncoder", "TrainingRows", .product(name: "Logging", package: "swift-log"),
            ]),
        // Off-policy evaluation: logged decisions with propensities, and the IPS, SNIPS and doubly robust estimates of another policy.
        .target(name: "OffPolicy", dependencies: ["RouterJSON", "StableHash"]),
        // Benchmarks and the soak: load through the socket, the encoder's timings, learning replayed through a routerd it starts.
        .target(
            name: "RouterBenchmarks",
            dependencies: [
                "RouterClient", "RouterConfig", "RouterEvaluation", "RouterJSON", "RouterPluginHost", "RouterProtocol", "RouterTraining",
                "RouterVocabulary", "SafeTensors", "SimilarityRanking", "StableHash", "TextEncoder", "TrainingRows",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // The gateway's stub upstream and HTTP load (with the trait Gateway).
                "HTTPServing",
                .product(name: "HTTPTypes", package: "swift-http-types", condition: gatewayTrait),
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: gatewayTrait),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "routerd",
            dependencies: [
                "CMalloc", "Fleet", "Gateway", "RouterConfig", "RouterDaemon", "RouterEngine", "RouterMetrics", "RouterPluginHost", "TextEncoder",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "routerctl",
            dependencies: [
                "Labelling", "OffPolicy", "OfflineEvaluation", "OpenAIChat", "RouterBenchmarks", "RouterClient", "RouterConfig", "RouterEngine",
                "RouterEvaluation",
                "RouterJSON", "RouterPluginKit", "RouterProtocol", "RouterTraining", "RouterVocabulary", "SafeTensors", "SimilarityRanking",
                "TextEncoder", "TrainingRows",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]),

        // What the tests share: the real daemon on a temporary socket, configs, a line client, the encoder fixture.
        .target(name: "RouterdTestSupport", dependencies: ["RouterProtocol", "TextEncoder"], path: "Tests/RouterdTestSupport"),

        .testTarget(name: "RouterConfigTests", dependencies: ["RouterConfig", "RouterVocabulary", "UpstreamFallback"]),
        .testTarget(
            name: "TextEncoderTests",
            dependencies: ["RouterdTestSupport", "RouterVocabulary", "TextEncoder"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors"]),
        .testTarget(name: "StableHashTests", dependencies: ["StableHash"]),
        .testTarget(name: "TrainingRowsTests", dependencies: ["RouterJSON", "RouterVocabulary", "TrainingRows"]),
        .testTarget(name: "RouterEvaluationTests", dependencies: ["RouterEvaluation", "TrainingRows"]),
        .testTarget(
            name: "RouterTrainingTests", dependencies: ["MatrixFactorization", "PromptFeatures", "RouterTraining", "StableHash", "TrainingRows"]),
        .testTarget(
            name: "HTTPServingTests",
            dependencies: [
                "HTTPServing", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"), .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "RouterBenchmarksTests",
            dependencies: ["RouterBenchmarks", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(name: "LabellingTests", dependencies: ["Labelling", "OpenAIChat"]),
        .testTarget(name: "OffPolicyTests", dependencies: ["OffPolicy", "StableHash"]),
        .testTarget(name: "QualityCorrectionTests", dependencies: ["QualityCorrection", "SafeTensors", "StableHash"]),
        .testTarget(name: "SimilarityRankingTests", dependencies: ["SafeTensors", "SimilarityRanking", "StableHash"]),
        .testTarget(name: "RouterProtocolTests", dependencies: ["RouterProtocol", "RouterVocabulary"]),
        .testTarget(name: "OpenAIProtocolTests", dependencies: ["OpenAIProtocol", "RouterJSON"]),
        .testTarget(name: "UpstreamFallbackTests", dependencies: ["UpstreamFallback"]),
        .testTarget(name: "RouterPluginKitTests", dependencies: ["RouterJSON", "RouterPluginKit", "RouterVocabulary"]),
        // In-process: the engine and the plugin host without a socket, on the real plugins this package builds.
        .testTarget(
            name: "RouterEngineTests",
            dependencies: [
                "RouterConfig", "RouterJSON", "RouterdTestSupport", "RouterEngine", "RouterPluginHost", "RouterPluginKit",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // In-process: framing, connections and services on NIO's and ServiceLifecycle's test kits.
        .testTarget(
            name: "RouterDaemonTests",
            dependencies: [
                "RouterDaemon", "RouterdTestSupport", "RouterEngine", "RouterProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ]),
        .testTarget(
            name: "RouterdIntegrationTests",
            dependencies: [
                "RouterBenchmarks", "RouterClient", "RouterEvaluation", "RouterProtocol", "RouterTraining", "RouterVocabulary", "RouterdTestSupport",
                "SafeTensors",
                "SimilarityRanking",
                "StableHash", "TextEncoder", "TrainingRows",
                "routerd", "routerctl",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                // The gateway's tests: an HTTP client (the stub upstream is RouterBenchmarks').
                .product(name: "AsyncHTTPClient", package: "async-http-client", condition: gatewayTrait),
            ],
            exclude: ["ExternalPlugin", "ExternalPackage", "Gateway"]),
    ]
    + routerPlugins.map(pluginTarget)

let package = Package(
    name: "llm-router", platforms: [.macOS(.v14)], products: products, traits: traits, dependencies: dependencies, targets: targets)

// Every Swift target declares what it imports: a member of a module is visible only where that
// module is imported (SE-0444), so the compiler holds the layers apart.
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [SwiftSetting.enableUpcomingFeature("MemberImportVisibility")]
}
