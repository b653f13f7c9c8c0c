import Foundation

/// A problem with a safetensors file, naming the file and what is wrong.
public struct SafeTensorsError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var message: String

    public init(file: String, message: String) {
        self.file = file
        self.message = message
    }

    public var description: String { "\(file): \(message)" }
}

/// A safetensors file, memory-mapped.
///
/// Format: an 8-byte little-endian header length N, N bytes of JSON mapping
/// tensor names to `{dtype, shape, data_offsets: [begin, end]}` (offsets
/// relative to the end of the header) plus an optional `__metadata__` map of
/// strings, then the tensor bytes. Everything is validated at open: offsets
/// in range and consistent with dtype and shape, no overlaps.
public final class SafeTensorsFile: @unchecked Sendable {
    // Immutable after init; the mapping lives until deinit.

    public enum DType: String, Sendable {
        case f64 = "F64"
        case f32 = "F32"
        case f16 = "F16"
        case bf16 = "BF16"
        case i64 = "I64"
        case i32 = "I32"

        var size: Int {
            switch self {
            case .f32, .i32: return 4
            case .f16, .bf16: return 2
            case .i64, .f64: return 8
            }
        }
    }

    public struct TensorInfo: Sendable {
        public var dtype: DType
        public var shape: [Int]
        /// Byte range within the data section.
        public var range: Range<Int>

        public var count: Int { shape.reduce(1, *) }
    }

    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]

    /// A metadata value that holds JSON (model lists, quantiles), decoded; nil when absent or malformed.
    public func metadataJSON<T: Decodable>(_ key: String, as type: T.Type = T.self) -> T? {
        metadata[key].flatMap { try? JSONDecoder().decode(T.self, from: Data($0.utf8)) }
    }
    private let mapping: UnsafeMutableRawPointer
    private let mappedLength: Int
    private let dataOffset: Int

    /// The header may not be larger than this (the format's own limit is 100 MB).
    static let maxHeaderLength = 100_000_000

    public init(path: String) throws(SafeTensorsError) {
        func fail(_ message: String) -> SafeTensorsError { SafeTensorsError(file: path, message: message) }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
        let length = Int(info.st_size)
        guard length >= 8 else { throw fail("truncated: \(length) bytes, shorter than the 8-byte header length") }
        guard let mapped = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw fail("cannot map: \(String(cString: strerror(errno)))")
        }
        var keepMapping = false
        defer { if !keepMapping { munmap(mapped, length) } }

        // Checked as the file's UInt64 first: a length past Int.max must be refused, not trap.
        let storedLength = UInt64(littleEndian: mapped.loadUnaligned(as: UInt64.self))
        guard storedLength > 0, storedLength <= UInt64(Self.maxHeaderLength) else {
            throw fail("bad header length \(storedLength) (must be 1 to \(Self.maxHeaderLength))")
        }
        let headerLength = Int(storedLength)
        guard 8 + headerLength <= length else {
            throw fail("truncated: the header needs \(headerLength) bytes but the file has \(length - 8) after the length")
        }
        let headerData = Data(bytes: mapped + 8, count: headerLength)
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw fail("the header is not a JSON object")
        }
        let dataLength = length - 8 - headerLength
        var tensors: [String: TensorInfo] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let entries = value as? [String: Any] else { throw fail("__metadata__ must be an object of strings") }
                for (key, entry) in entries {
                    guard let text = entry as? String else { throw fail("__metadata__.\(key) must be a string") }
                    metadata[key] = text
                }
                continue
            }
            guard let fields = value as? [String: Any] else { throw fail("tensor '\(name)': entry is not an object") }
            guard let dtypeName = fields["dtype"] as? String else { throw fail("tensor '\(name)': missing dtype") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw fail("tensor '\(name)': unsupported dtype \(dtypeName) (supported: F32, F16, BF16, I64, I32)")
            }
            guard let shapeValues = fields["shape"] as? [Any], let shape = Self.integers(shapeValues), shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor '\(name)': shape must be a list of non-negative integers")
            }
            guard let offsetValues = fields["data_offsets"] as? [Any], let offsets = Self.integers(offsetValues), offsets.count == 2 else {
                throw fail("tensor '\(name)': data_offsets must be two integers")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor '\(name)': data_offsets [\(begin), \(end)] out of range (the data section has \(dataLength) bytes)")
            }
            let expected = shape.reduce(1, *) * dtype.size
            guard end - begin == expected else {
                throw fail("tensor '\(name)': \(end - begin) bytes for shape \(shape) of \(dtypeName), which needs \(expected)")
            }
            tensors[name] = TensorInfo(dtype: dtype, shape: shape, range: begin..<end)
        }
        let sorted = tensors.values.map(\.range).filter { !$0.isEmpty }.sorted { $0.lowerBound < $1.lowerBound }
        for (previous, next) in zip(sorted, sorted.dropFirst()) where next.lowerBound < previous.upperBound {
            throw fail("tensors overlap at byte \(next.lowerBound) of the data section")
        }
        self.path = path
        self.tensors = tensors
        self.metadata = metadata
        self.mapping = mapped
        self.mappedLength = length
        self.dataOffset = 8 + headerLength
        keepMapping = true
    }

    deinit { munmap(mapping, mappedLength) }

    /// A tensor as Float32, converted from F16 or BF16 if needed, checked to have `shape`.
    public func floats(_ name: String, shape expected: [Int]? = nil) throws(SafeTensorsError) -> [Float] {
        guard let info = tensors[name] else { throw SafeTensorsError(file: path, message: "missing tensor '\(name)'") }
        if let expected, info.shape != expected {
            throw SafeTensorsError(file: path, message: "tensor '\(name)' has shape \(info.shape), expected \(expected)")
        }
        let base = UnsafeRawPointer(mapping) + dataOffset + info.range.lowerBound
        let count = info.count
        switch info.dtype {
        case .f32:
            return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                for index in 0..<count {
                    buffer[index] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self)))
                }
                initialized = count
            }
        case .f16:
            return (0..<count).map { Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
        case .bf16:
            return (0..<count).map {
                Float(bitPattern: UInt32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) << 16)
            }
        case .f64:
            return try doubles(name).map(Float.init)
        case .i64, .i32:
            throw SafeTensorsError(file: path, message: "tensor '\(name)' is \(info.dtype.rawValue), not a floating-point tensor")
        }
    }

    /// A tensor as Float64, exactly for F64 (sums a learner keeps across restarts), widened from the
    /// other floating-point types; checked to have `shape`.
    public func doubles(_ name: String, shape expected: [Int]? = nil) throws(SafeTensorsError) -> [Double] {
        guard let info = tensors[name] else { throw SafeTensorsError(file: path, message: "missing tensor '\(name)'") }
        if let expected, info.shape != expected {
            throw SafeTensorsError(file: path, message: "tensor '\(name)' has shape \(info.shape), expected \(expected)")
        }
        guard info.dtype == .f64 else { return try floats(name).map(Double.init) }
        let base = UnsafeRawPointer(mapping) + dataOffset + info.range.lowerBound
        return (0..<info.count).map { Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) }
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var result: [Int] = []
        for value in values {
            guard let number = value as? NSNumber, let integer = Int(exactly: number.doubleValue) else { return nil }
            result.append(integer)
        }
        return result
    }
}
