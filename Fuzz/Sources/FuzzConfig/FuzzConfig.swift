import Foundation
import RouterConfig

/// The daemon config loader on arbitrary bytes: it returns a config or throws `ConfigError` with
/// located issues, and never crashes. Plugins are looked up in the repository's `plugins/`.
private let directory: String = {
    let path = NSTemporaryDirectory() + "/routerd-fuzz-config-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let file = directory + "/routerd.yaml"
    _ = FileManager.default.createFile(atPath: file, contents: Data(bytes: data, count: size))
    do {
        _ = try ConfigLoader.load(file: file, hostABIVersion: 1)
    } catch {
        precondition(!error.issues.isEmpty, "a rejected config names at least one problem")
    }
    if let text = String(validating: UnsafeBufferPointer(start: data, count: size), as: UTF8.self) {
        _ = try? YAMLParser.parse(text)
    }
    return 0
}
