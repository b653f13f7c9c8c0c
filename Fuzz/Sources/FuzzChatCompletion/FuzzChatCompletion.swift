import OpenAIProtocol
import RouterJSON

/// The gateway's body-to-engine mapping from raw bytes: a chat completion request is read (or
/// refused with a 400 whose body is OpenAI's error shape), the body forwarded upstream keeps
/// every member but `model`, and the stream scanner reads the same bytes alike however they are cut.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChatCompletion(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let request = try ChatCompletionRequest(json: bytes)
        guard case .object(let forwarded)? = try? JSONValue.parse(request.forwarded(as: "upstream")) else {
            preconditionFailure("a forwarded body is a JSON object")
        }
        precondition(forwarded["model"] == .string("upstream"), "the forwarded body names the upstream's model")
        var expected = Set(request.body.keys)
        if request.stream { expected.insert("stream_options") }
        precondition(Set(forwarded.keys) == expected, "the forwarded body keeps every member")
        for (key, value) in request.body where key != "model" && key != "stream_options" {
            precondition(forwarded[key] == value, "member '\(key)' passes through unchanged")
        }
    } catch {
        precondition(error.status == 400, "a bad body is a 400")
        guard case .object(let members)? = try? JSONValue.parse(error.body), members["error"]?.objectValue?["message"] != nil else {
            preconditionFailure("an error body is {error: {message, …}}")
        }
    }
    var whole = StreamRelay(model: "m", keepUsageChunk: false, maxLineBytes: 4096)
    let wholeOutput = whole.relay(bytes) + whole.flush()
    var cut = StreamRelay(model: "m", keepUsageChunk: false, maxLineBytes: 4096)
    let cutOutput = cut.relay(bytes[..<(bytes.count / 2)]) + cut.relay(bytes[(bytes.count / 2)...]) + cut.flush()
    precondition(whole.usage == cut.usage && whole.sawDone == cut.sawDone && whole.events == cut.events, "the relay reads cut bytes alike")
    precondition(wholeOutput == cutOutput, "the relay sends cut bytes alike")
    var untouched = StreamRelay(maxLineBytes: 4096)
    precondition(untouched.relay(bytes) + untouched.flush() == bytes, "without a model to rename and with usage kept, bytes pass unchanged")
    return 0
}
