import Foundation
import RouterConfig

/// Plugin descriptors on arbitrary bytes: a fixed config names plugin `fuzzed`, whose
/// `plugin.yaml` is the input. The loader returns or throws located issues, and never crashes.
private let directory: String = {
    let path = NSTemporaryDirectory() + "/routerd-fuzz-descriptor-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path + "/plugins/fuzzed", withIntermediateDirectories: true)
    let config = """
        socket:
          path: \(path)/unused.sock
        plugins:
          search_paths: [plugins]
        routers:
          r:
            plugin: fuzzed
            threshold: 0.5
            strong_model: a
            weak_model: b
            params:
              seed: 1
        """
    _ = FileManager.default.createFile(atPath: path + "/routerd.yaml", contents: Data(config.utf8))
    return path
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDescriptor(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = FileManager.default.createFile(atPath: directory + "/plugins/fuzzed/plugin.yaml", contents: Data(bytes: data, count: size))
    do {
        _ = try ConfigLoader.load(file: directory + "/routerd.yaml", hostABIVersion: 1)
    } catch {
        precondition(!error.issues.isEmpty, "a rejected descriptor names at least one problem")
    }
    return 0
}
