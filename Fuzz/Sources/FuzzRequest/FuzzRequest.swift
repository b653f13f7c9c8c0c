import Foundation
import RouterJSON
import RouterProtocol

/// The request path from raw bytes: lines as the daemon frames them (split at newlines, a bounded
/// length), each decoded into a `Request` with its validation, and every error answer checked to be
/// one line of JSON that says `ok: false`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: true) where line.count <= 1 << 16 {
        let decoded = RequestCodec.decode(Data(line))
        guard case .failure(let error) = decoded.outcome else { continue }
        let answer = ResponseCodec.failure(error, id: decoded.id)
        precondition(answer.last == 0x0A && !answer.dropLast().contains(0x0A), "an error answer is one line")
        guard case .object(let members)? = try? JSONValue.parse(answer.dropLast()), members["ok"] == .bool(false) else {
            preconditionFailure("an error answer is a JSON object with ok: false: \(String(decoding: answer, as: UTF8.self))")
        }
    }
    return 0
}
