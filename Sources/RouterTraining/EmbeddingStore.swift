import Foundation

/// An on-disk cache of text embeddings, so retraining and re-evaluating do
/// not re-embed. Keyed by the exact text (stored in the file, so there are no
/// hash collisions); one file per encoder configuration.
///
/// Format: the magic `RTEMB1\n`, the dimension (UInt32 LE), then records of
/// text length (UInt32 LE), UTF-8 text, and `dimension` Float32 LE values.
/// New records are appended; a truncated last record (an interrupted run) is
/// ignored on load.
public final class EmbeddingStore {
    public let path: String
    public let dimension: Int
    private var vectors: [String: [Float]] = [:]
    private var pending: [(String, [Float])] = []

    static let magic = Array("RTEMB1\n".utf8)

    public init(path: String, dimension: Int) throws(TrainingDataError) {
        self.path = path
        self.dimension = dimension
        guard let data = FileManager.default.contents(atPath: path) else { return }
        let bytes = [UInt8](data)
        guard bytes.count >= Self.magic.count + 4, Array(bytes[0..<Self.magic.count]) == Self.magic else {
            throw TrainingDataError("\(path) is not an embedding cache; delete it to rebuild it")
        }
        var offset = Self.magic.count
        func uint32() -> Int? {
            guard offset + 4 <= bytes.count else { return nil }
            defer { offset += 4 }
            return Int(UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24)
        }
        guard uint32() == dimension else {
            throw TrainingDataError("\(path) holds embeddings of another dimension; delete it to rebuild it")
        }
        while let length = uint32(), offset + length + 4 * dimension <= bytes.count {
            let text = String(decoding: bytes[offset..<offset + length], as: UTF8.self)
            offset += length
            let vector = bytes[offset..<offset + 4 * dimension].withUnsafeBytes { raw in
                (0..<dimension).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
            offset += 4 * dimension
            vectors[text] = vector
        }
    }

    public var count: Int { vectors.count }

    public subscript(text: String) -> [Float]? { vectors[text] }

    public func insert(_ vector: [Float], for text: String) {
        guard vectors[text] == nil else { return }
        vectors[text] = vector
        pending.append((text, vector))
    }

    /// Appends the new records to the file.
    public func save() throws(TrainingDataError) {
        guard !pending.isEmpty else { return }
        var data = Data()
        if !FileManager.default.fileExists(atPath: path) {
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            data.append(contentsOf: Self.magic)
            withUnsafeBytes(of: UInt32(dimension).littleEndian) { data.append(contentsOf: $0) }
        }
        for (text, vector) in pending {
            let utf8 = Array(text.utf8)
            withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { data.append(contentsOf: $0) }
            data.append(contentsOf: utf8)
            for value in vector { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
        }
        guard
            let handle = FileHandle(forWritingAtPath: path)
                ?? {
                    _ = FileManager.default.createFile(atPath: path, contents: nil)
                    return FileHandle(forWritingAtPath: path)
                }()
        else { throw TrainingDataError("cannot write the embedding cache \(path)") }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: data)
        } catch {
            throw TrainingDataError("cannot write the embedding cache \(path): \(error.localizedDescription)")
        }
        pending.removeAll()
    }
}
