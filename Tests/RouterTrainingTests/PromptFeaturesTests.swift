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
        #expect(PromptFeatures.values("") == PromptFeatures.values(""), "an empty prompt is fine")
    }
}
