import Foundation
import Testing

@testable import SafeTensors

@Suite struct SafeTensorsTests {
    /// Writes a safetensors file from a header JSON text and raw data bytes.
    func file(header: String, data: [UInt8], lengthOverride: UInt64? = nil, truncateTo: Int? = nil) throws -> String {
        let path = NSTemporaryDirectory() + "st-\(UUID().uuidString).safetensors"
        var bytes = withUnsafeBytes(of: (lengthOverride ?? UInt64(header.utf8.count)).littleEndian) { Array($0) }
        bytes += Array(header.utf8) + data
        if let truncateTo { bytes = Array(bytes.prefix(truncateTo)) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func floatBytes(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } } }

    func error(_ path: String) -> String {
        do {
            _ = try SafeTensorsFile(path: path)
            return "opened"
        } catch {
            return error.message
        }
    }

    @Test func aValidFileReadsWithConversions() throws {
        let f16: [UInt16] = [Float16(1.5).bitPattern, Float16(-2).bitPattern]
        let bf16: [UInt16] = [UInt16(Float(0.75).bitPattern >> 16)]
        let data =
            floatBytes([1, 2, 3, 4, 5, 6]) + f16.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }
            + bf16.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }
        let path = try file(
            header:
                #"{"__metadata__":{"models":"a,b"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"h":{"dtype":"F16","shape":[2],"data_offsets":[24,28]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[28,30]}}"#,
            data: data)
        let tensors = try SafeTensorsFile(path: path)
        #expect(tensors.metadata == ["models": "a,b"])
        #expect(try tensors.floats("w", shape: [2, 3]) == [1, 2, 3, 4, 5, 6])
        #expect(try tensors.floats("h") == [1.5, -2])
        #expect(try tensors.floats("b") == [0.75])
        #expect(throws: SafeTensorsError.self) { try tensors.floats("w", shape: [3, 2]) }
        #expect(throws: SafeTensorsError.self) { try tensors.floats("missing") }
    }

    @Test func malformedFilesAreRejectedPrecisely() throws {
        let good = #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        #expect(error(try file(header: good, data: [], truncateTo: 5)).contains("truncated"))
        #expect(error(try file(header: good, data: floatBytes([1, 2]), lengthOverride: 0)).contains("bad header length 0"))
        #expect(error(try file(header: good, data: floatBytes([1, 2]), lengthOverride: 1 << 40)).contains("bad header length"))
        #expect(error(try file(header: good, data: floatBytes([1, 2]), lengthOverride: 500)).contains("truncated: the header needs 500 bytes"))
        // Found by `make fuzz` (FuzzSafeTensors): a length past Int.max trapped converting to Int.
        #expect(error(try file(header: good, data: floatBytes([1, 2]), lengthOverride: 0xFFFF_FF00_0000_2E02)).contains("bad header length"))
        #expect(error(try file(header: "[1,2]", data: [])).contains("not a JSON object"))
        #expect(error(try file(header: good, data: floatBytes([1]))).contains("out of range"))
        #expect(
            error(try file(header: #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: floatBytes([1, 2]))).contains(
                "8 bytes for shape [3] of F32, which needs 12"))
        #expect(
            error(try file(header: #"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, data: floatBytes([1, 2]))).contains(
                "unsupported dtype Q4"))
        #expect(
            error(
                try file(
                    header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    data: floatBytes([1, 2]))
            ).contains("overlap"))
    }
}

@Suite struct SafeTensorsWriterTests {
    @Test func writtenFilesReadBack() throws {
        let path = NSTemporaryDirectory() + "st-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        try SafeTensorsWriter.write(
            [.init(name: "b", shape: [3], values: [1, -2, .pi]), .init(name: "a", shape: [2, 2], values: [0, 1, 2, 3])],
            metadata: ["models": #"["x","y"]"#], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(try file.floats("a", shape: [2, 2]) == [0, 1, 2, 3])
        #expect(try file.floats("b") == [1, -2, .pi])
        #expect(file.metadata["models"] == #"["x","y"]"#)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp-\(getpid())"))
    }

    @Test func halfTensorsAreWrittenAsF16AndReadBackRounded() throws {
        let path = NSTemporaryDirectory() + "st-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        try SafeTensorsWriter.write([.init(name: "h", shape: [3], values: [1, -0.5, 0.1], half: true)], metadata: [:], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.tensors["h"]?.dtype == .f16)
        #expect(try file.floats("h") == [1, -0.5, Float(Float16(0.1))])
        #expect(file.tensors["h"]?.range.count == 6)
    }

    @Test func doubleTensorsAreWrittenAsF64AndReadBackExactly() throws {
        let path = NSTemporaryDirectory() + "st-\(UUID().uuidString).safetensors"
        defer { unlink(path) }
        let values = [1.0 / 3, -1e-300, 123_456_789.123_456_789, 0.1]
        try SafeTensorsWriter.write([.init(name: "d", shape: [2, 2], doubles: values)], metadata: [:], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.tensors["d"]?.dtype == .f64 && file.tensors["d"]?.range.count == 32)
        #expect(try file.doubles("d", shape: [2, 2]) == values)
        #expect(try file.floats("d") == values.map(Float.init), "read as Float32, narrowed")
    }

    @Test func aShapeThatDoesNotMatchIsRefused() {
        #expect(throws: SafeTensorsError.self) {
            try SafeTensorsWriter.write([.init(name: "a", shape: [3], values: [1])], metadata: [:], to: NSTemporaryDirectory() + "never.safetensors")
        }
    }
}
