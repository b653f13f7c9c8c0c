import Foundation
import PromptFeatures
import Testing

@Suite struct PromptFeaturesTests {
    @Test func countsWhatTheyName() throws {
        let text = "What is 12 + 30.5?\nA. 42.5\nB) 40\n(C) 43\nDéjà vu?"
        let values = PromptFeatures.values(text)
        #expect(values.count == PromptFeatures.count)
        func feature(_ name: String) throws -> Float { values[try #require(PromptFeatures.names.firstIndex(of: name))] }
        #expect(try feature("log_lines") == Float(log1p(5.0)))
        #expect(try feature("log_options") == Float(log1p(3.0)), "A., B) and (C) start option lines")
        #expect(try feature("log_numbers") == Float(log1p(5.0)), "12, 30.5, 42.5, 40 and 43")
        #expect(try feature("log_questions") == Float(log1p(2.0)))
        #expect(try feature("non_ascii_share") > 0)
        // An empty prompt is one empty line: every count 0 but the lines, every share 0 (not 0/0).
        var empty = [Float](repeating: 0, count: PromptFeatures.count)
        empty[try #require(PromptFeatures.names.firstIndex(of: "log_lines"))] = Float(log1p(1.0))
        #expect(PromptFeatures.values("") == empty)
    }
}
