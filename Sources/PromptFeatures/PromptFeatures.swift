import Foundation

/// Cheap surface features of a prompt, beside its sentence embedding.
///
/// A mean-pooled, L2-normalised embedding keeps a prompt's topic but loses its length and
/// most of its numbers, and both say how hard a prompt is. These features bring them back;
/// they cost one pass over the text. Trainer and plugin compute them here, so they match.
/// The order of ``names`` is the order of ``values(_:)``, and weights files record it.
public enum PromptFeatures {
    /// The features, in order.
    public static let names = [
        "log_characters", "log_words", "log_lines", "digit_share", "log_numbers", "log_math_symbols", "log_code_markers", "log_questions",
        "log_options", "non_ascii_share", "upper_share", "latex",
    ]

    public static var count: Int { names.count }

    /// The features of `text`, in the order of ``names``.
    public static func values(_ text: String) -> [Float] {
        var characters = 0
        var words = 0
        var lines = 1
        var digits = 0
        var numbers = 0
        var mathSymbols = 0
        var codeMarkers = 0
        var questions = 0
        var options = 0
        var nonASCII = 0
        var upper = 0
        var latex = 0
        var inWord = false
        var inNumber = false
        var atLineStart = true
        var lineHead: [Unicode.Scalar] = []
        for scalar in text.unicodeScalars {
            characters += 1
            let value = scalar.value
            if value > 127 { nonASCII += 1 }
            let isSpace = scalar == " " || scalar == "\t" || scalar == "\n" || scalar == "\r"
            if isSpace {
                inWord = false
            } else if !inWord {
                inWord = true
                words += 1
            }
            let isDigit = value >= 48 && value <= 57
            if isDigit {
                digits += 1
                if !inNumber { numbers += 1 }
            }
            inNumber = isDigit || (inNumber && scalar == ".")
            if value >= 65 && value <= 90 { upper += 1 }
            switch scalar {
            case "+", "*", "/", "^", "=", "<", ">", "%", "√", "∫", "∑", "π", "×", "÷", "≤", "≥": mathSymbols += 1
            case "{", "}", ";", "`", "[", "]", "_": codeMarkers += 1
            case "?": questions += 1
            case "\\", "$": latex += 1
            default: break
            }
            if scalar == "\n" {
                lines += 1
                if Self.isOption(lineHead) { options += 1 }
                lineHead.removeAll(keepingCapacity: true)
                atLineStart = true
            } else if atLineStart || lineHead.count < 4 {
                lineHead.append(scalar)
                atLineStart = false
            }
        }
        if Self.isOption(lineHead) { options += 1 }
        let total = Float(max(characters, 1))
        func log1p(_ count: Int) -> Float { Float(Foundation.log1p(Double(count))) }
        return [
            log1p(characters), log1p(words), log1p(lines), Float(digits) / total, log1p(numbers), log1p(mathSymbols), log1p(codeMarkers),
            log1p(questions), log1p(options), Float(nonASCII) / total, Float(upper) / total, log1p(latex),
        ]
    }

    /// "A. …", "B) …", "(C) …": a multiple-choice option at the start of a line.
    private static func isOption(_ head: [Unicode.Scalar]) -> Bool {
        var scalars = head[...]
        if scalars.first == "(" { scalars = scalars.dropFirst() }
        guard let letter = scalars.first, letter.value >= 65, letter.value <= 74 else { return false }
        let next = scalars.dropFirst().first
        return next == "." || next == ")"
    }
}
