import Foundation
import SafeTensors

/// The safetensors reader on arbitrary bytes: it opens a valid file or throws, and every tensor it
/// lists either reads as floats of its declared size or throws, never reading out of bounds.
private let file: String = NSTemporaryDirectory() + "/routerd-fuzz-\(getpid()).safetensors"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = FileManager.default.createFile(atPath: file, contents: Data(bytes: data, count: size))
    guard let tensors = try? SafeTensorsFile(path: file) else { return 0 }
    for (name, tensor) in tensors.tensors {
        if let values = try? tensors.floats(name) {
            precondition(values.count == tensor.shape.reduce(1, *), "\(name): \(values.count) floats for shape \(tensor.shape)")
        }
    }
    _ = tensors.metadataJSON("models", as: [String].self)
    return 0
}
