// swift-tools-version: 6.0
// libFuzzer targets for every parser routerd runs on untrusted input. Built apart from the main
// package because a fuzz target's `main` comes from libFuzzer: `make fuzz` builds this package
// with libFuzzer and AddressSanitizer and runs each target (docs/OPERATIONS.md, "Fuzzing").
import PackageDescription

let targets = ["FuzzRequest", "FuzzConfig", "FuzzDescriptor", "FuzzSafeTensors", "FuzzTokenizer", "FuzzJSONRoundTrip", "FuzzChatCompletion"]

let package = Package(
    name: "llm-router-fuzz",
    dependencies: [.package(name: "llm-router", path: "..")],
    targets: targets.map { name in
        .executableTarget(
            name: name, dependencies: [.product(name: "RouterParsers", package: "llm-router")], path: "Sources/\(name)",
            swiftSettings: [.unsafeFlags(["-parse-as-library"])])
    }
)
