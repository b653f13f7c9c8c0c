import Foundation
import TextEncoder

/// The WordPiece tokenizer on arbitrary text, with the real MiniLM vocabulary
/// (`ROUTERD_FUZZ_VOCAB`, default `../models/all-MiniLM-L6-v2/vocab.txt` from `Fuzz/`): every id
/// it returns is in the vocabulary.
private let tokenizer: BertTokenizer = {
    let path = ProcessInfo.processInfo.environment["ROUTERD_FUZZ_VOCAB"] ?? "../models/all-MiniLM-L6-v2/vocab.txt"
    do {
        return try BertTokenizer(vocabularyFile: path)
    } catch {
        fatalError("the fuzz target needs the MiniLM vocabulary (`make setup` fetches it): \(error)")
    }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    for id in tokenizer.wordPieces(text) {
        precondition(tokenizer.token(id) != nil, "id \(id) is not in the vocabulary")
    }
    return 0
}
