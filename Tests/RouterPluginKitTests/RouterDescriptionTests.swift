import RouterJSON
import RouterPluginKit
import RouterVocabulary
import Testing

@Suite struct RouterDescriptionTests {
    static func parse(_ text: String) throws(RouterDescriptionError) -> RouterDescription {
        try RouterDescription(json: Array(text.utf8))
    }

    @Test func theContractFieldsAreTypedAndTheRestKept() throws {
        let description = try Self.parse(#"{"score_quantiles":[0,0.5,1],"models":["a","b"],"embedding_dim":384,"seed":7,"note":"x"}"#)
        #expect(description.scoreQuantiles == [0, 0.5, 1])
        #expect(description.models == ["a", "b"])
        #expect(description.embeddingDimension == 384)
        #expect(description.details == ["seed": 7, "note": "x"])
        // What the host hands the wire is the whole object again.
        #expect(try Self.parse(description.json) == description)
        #expect(description.object[MetadataKey.scoreQuantiles] == [0.0, 0.5, 1.0])
    }

    @Test(
        arguments: [
            ("not json", "not JSON"),
            ("[1,2]", "must return a JSON object"),
            (#"{"score_quantiles":[0.9,0.1]}"#, "must be non-decreasing"),
            (#"{"score_quantiles":[0.5]}"#, "needs at least 2 values"),
            (#"{"score_quantiles":[0,1.5]}"#, "must lie in [0, 1]"),
            (#"{"score_quantiles":["low","high"]}"#, "must be a list of numbers"),
            (#"{"models":["a",1]}"#, "must be a list of model names"),
            (#"{"embedding_dim":-1}"#, "must be a non-negative integer"),
        ])
    func aDescriptionThatBreaksTheContractIsRefused(text: String, message: String) {
        do {
            _ = try Self.parse(text)
            Issue.record("\(text) must be refused")
        } catch {
            #expect(error.message.contains(message), "\(error.message)")
        }
    }

    @Test func anEmptyDescriptionHasNothingTyped() throws {
        let description = try Self.parse("{}")
        #expect(description == RouterDescription())
    }
}

@Suite struct JSONValueTests {
    @Test func whatTheWriterWritesParsesBackToTheSameValue() throws {
        let value: JSONValue = [
            "text": "quote \" backslash \\ newline \n tab \t control \u{01} unicode é 🚀", "int": 42, "negative": -7, "double": 0.1,
            "big": 1e300, "bool": true, "null": .null, "list": [1, "two", [3.5], [:]], "nested": ["k": ["deeper": false]],
        ]
        #expect(try JSONValue.parse(Array(value.text.utf8)) == value)
    }

    /// A number is an integer when written without a fraction or exponent and within Int64;
    /// booleans stay booleans (JSONSerialization hands both back as NSNumbers).
    @Test func numbersAndBooleansKeepTheirKinds() throws {
        let parsed = try JSONValue.parse(
            Array(#"[1, -1, 0, 9223372036854775807, -9223372036854775808, 9223372036854775808, 1.0, 1e2, 0.5, true, false, null]"#.utf8))
        #expect(
            parsed == [
                .integer(1), .integer(-1), .integer(0), .integer(.max), .integer(.min), .number(9_223_372_036_854_775_808), .number(1),
                .number(100), .number(0.5), .bool(true), .bool(false), .null,
            ])
        #expect(try JSONValue.parse(Array("123456789012345678901234567890".utf8)) == .number(1.2345678901234568e29))
        #expect(try JSONValue.parse(Array(#""\u00e9\n""#.utf8)) == .string("é\n"))
    }

    /// A double written with its shortest digits reads back bit for bit, however many digits it
    /// takes (JSONSerialization's own conversion of a 17-digit number is not correctly rounded).
    @Test func everyDoubleReadsBackExactly() throws {
        var generator = SystemRandomNumberGenerator()
        var doubles: [Double] = [
            3.1415937311508433, -1.6276963294116273e+127, 1.6655998488493935e+86, 0.1, Double(bitPattern: 0x7E8), .leastNonzeroMagnitude,
            2.2250738585072014e-308,
            1.7976931348623157e308, -0.0,
        ]
        for _ in 0..<2_000 {
            let random = Double(bitPattern: generator.next())
            if random.isFinite { doubles.append(random) }
        }
        for double in doubles {
            let parsed = try JSONValue.parse(Array(JSONValue.number(double).text.utf8))
            #expect(
                parsed.doubleValue?.bitPattern == double.bitPattern || (parsed.doubleValue == 0 && double == 0), "\(double) read back as \(parsed)")
        }
    }

    @Test func textThatIsNotJSONIsRefusedWithAReason() {
        for text in [#"{"a":"#, "{'a':1}", "[1] 2", #""\ud800""#, String(repeating: "[", count: 600) + String(repeating: "]", count: 600)] {
            #expect(throws: JSONParseError.self, "\(text.prefix(20))") { try JSONValue.parse(Array(text.utf8)) }
        }
        do {
            _ = try JSONValue.parse(Array("[1,".utf8))
            Issue.record("a truncated array parsed")
        } catch {
            #expect(!error.message.isEmpty)
        }
    }

    @Test func objectKeysComeOutSorted() {
        #expect(JSONValue.object(["b": 1, "a": 2, "c": ["z": 0, "y": 1]]).text == #"{"a":2,"b":1,"c":{"y":1,"z":0}}"#)
    }
}
