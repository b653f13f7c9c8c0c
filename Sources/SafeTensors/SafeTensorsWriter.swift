import Foundation

/// Writes Float32 (or, to halve a file, Float16; or, for sums kept exactly, Float64) tensors and
/// string metadata as a safetensors file.
///
/// The header lists tensors in name order, so the same tensors always give
/// the same bytes, and is padded with spaces to a multiple of 8 bytes so the
/// data section is aligned. The file is written to a temporary name in the
/// same folder and renamed into place, so a reader never sees a torn file.
public enum SafeTensorsWriter {
    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        /// Stored as Float16 when true (values round to the nearest half).
        public var half: Bool

        /// Stored as Float64 instead of `values` when set.
        public var doubles: [Double]?

        public init(name: String, shape: [Int], values: [Float], half: Bool = false) {
            self.name = name
            self.shape = shape
            self.values = values
            self.half = half
        }

        public init(name: String, shape: [Int], doubles: [Double]) {
            self.init(name: name, shape: shape, values: [])
            self.doubles = doubles
        }

        var count: Int { doubles?.count ?? values.count }
        var dtype: String { doubles != nil ? "F64" : half ? "F16" : "F32" }
        var bytesPerValue: Int { doubles != nil ? 8 : half ? 2 : 4 }
    }

    /// Syncs the folder holding `path`, so a rename or unlink there lasts a crash.
    public static func syncFolder(of path: String) {
        let folder = (path as NSString).deletingLastPathComponent
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// With `durable`, the file is synced before it is renamed into place and its folder after,
    /// so after a crash the path holds either the previous file or this one, whole. The file gets
    /// `mode` (0600 for state only its writer should read); the temporary beside it is created
    /// afresh, never through a symbolic link another user left at its name.
    public static func write(
        _ tensors: [Tensor], metadata: [String: String], to path: String, durable: Bool = false, mode: mode_t = 0o644
    ) throws(SafeTensorsError) {
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError(file: path, message: message) }
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let sorted = tensors.sorted { $0.name < $1.name }
        for tensor in sorted {
            guard tensor.shape.reduce(1, *) == tensor.count else {
                throw fail("tensor '\(tensor.name)' has \(tensor.count) values for shape \(tensor.shape)")
            }
            let length = tensor.count * tensor.bytesPerValue
            header[tensor.name] = ["dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, offset + length]] as [String: Any]
            offset += length
        }
        guard var headerBytes = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) else {
            throw fail("cannot encode the header")
        }
        while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }
        var data = [UInt8]()
        data.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: headerBytes)
        // Each tensor converted in one pass and appended in one copy: a learning router rewrites
        // megabytes of state at every publish, and a per-value append costs more than the disk.
        for tensor in sorted {
            if let doubles = tensor.doubles {
                doubles.map { $0.bitPattern.littleEndian }.withUnsafeBytes { data.append(contentsOf: $0) }
            } else if tensor.half {
                tensor.values.map { Float16($0).bitPattern.littleEndian }.withUnsafeBytes { data.append(contentsOf: $0) }
            } else {
                tensor.values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { data.append(contentsOf: $0) }
            }
        }
        let temporary = path + ".tmp-\(getpid())"
        do {
            unlink(temporary)
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            guard fd >= 0 else { throw fail("cannot create \(temporary): \(String(cString: strerror(errno)))") }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            defer { try? handle.close() }
            // The umask may have narrowed `mode` at creation; set it exactly.
            fchmod(fd, mode)
            try handle.write(contentsOf: data)
            if durable { try handle.synchronize() }
            guard rename(temporary, path) == 0 else { throw fail("cannot rename into place: \(String(cString: strerror(errno)))") }
            if durable { syncFolder(of: path) }
        } catch let error as SafeTensorsError {
            unlink(temporary)
            throw error
        } catch {
            unlink(temporary)
            throw fail("cannot write: \(error.localizedDescription)")
        }
    }
}
