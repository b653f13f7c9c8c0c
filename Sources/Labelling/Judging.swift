import Foundation
import OpenAIChat

/// Which answer a judge preferred.
public enum Verdict: String, Sendable, Hashable {
    case first, second, tie
}

/// The pairwise judge, in the manner of MT-Bench's: the judge sees both answers and names the
/// better one, and is asked twice with the answers swapped; a verdict that does not survive the
/// swap (position bias, or a coin toss) counts as a tie. The instructions are our own words.
public enum PairwiseJudge {
    public static let system = """
        You judge answers written by AI assistants. You will see a user's question and two answers, A and B. \
        Decide which answer serves the user better: correct, helpful, complete and clear where it matters. \
        Length is no merit in itself, and the order in which the answers appear must not sway you. \
        Explain your reasoning in a few sentences, then give your verdict on the last line, exactly one of: \
        [[A]] if A is better, [[B]] if B is better, [[C]] if they are equally good or equally bad.
        """

    public static func messages(prompt: String, answerA: String, answerB: String) -> [ChatTurn] {
        [
            ChatTurn(role: "system", content: system),
            ChatTurn(
                role: "user",
                content:
                    "[Question]\n\(prompt)\n\n[Answer A]\n\(answerA)\n\n[Answer B]\n\(answerB)\n\nWhich answer is better? End with [[A]], [[B]] or [[C]]."
            ),
        ]
    }

    /// The judge's verdict on (A, B): the last of [[A]], [[B]] and [[C]] in its reply, or nil when it gave none.
    public static func verdict(_ reply: String) -> Verdict? {
        let marks: [(String, Verdict)] = [("[[A]]", .first), ("[[B]]", .second), ("[[C]]", .tie)]
        let found = marks.compactMap { mark, verdict in reply.range(of: mark, options: .backwards).map { ($0.lowerBound, verdict) } }
        return found.max { $0.0 < $1.0 }?.1
    }

    /// Combines the verdict with x as A and y as B and the verdict with y as A and x as B into
    /// who won between x (first) and y (second). A disagreement, or a missing verdict, is a tie.
    public static func combine(_ forward: Verdict?, _ swapped: Verdict?) -> Verdict {
        let back: Verdict? =
            switch swapped {
            case .first: .second
            case .second: .first
            case .tie: .tie
            case nil: nil
            }
        guard let forward, let back, forward == back else { return .tie }
        return forward
    }
}

/// Grading against a reference answer: exact match of the final number when the reference is a
/// number (GSM8K's answers), else a judge that sees the reference.
public enum ReferenceGrader {
    public static let system = """
        You grade an AI assistant's answer against a reference answer that is known to be correct. \
        The answer is correct if it reaches the same result as the reference, whatever its wording or working. \
        Explain briefly, then give your grade on the last line, exactly one of: [[CORRECT]] or [[INCORRECT]].
        """

    public static func messages(prompt: String, reference: String, answer: String) -> [ChatTurn] {
        [
            ChatTurn(role: "system", content: system),
            ChatTurn(
                role: "user",
                content:
                    "[Question]\n\(prompt)\n\n[Reference answer]\n\(reference)\n\n[Assistant's answer]\n\(answer)\n\nEnd with [[CORRECT]] or [[INCORRECT]]."
            ),
        ]
    }

    /// The judge's grade, 1 or 0, or nil when it gave none.
    public static func grade(_ reply: String) -> Double? {
        let correct = reply.range(of: "[[CORRECT]]", options: .backwards)?.lowerBound
        let incorrect = reply.range(of: "[[INCORRECT]]", options: .backwards)?.lowerBound
        switch (correct, incorrect) {
        case (nil, nil): return nil
        case (.some, nil): return 1
        case (nil, .some): return 0
        case (let c?, let i?): return c > i ? 1 : 0
        }
    }

    /// The reference as a number, when it is one ("1,250", "-3.5").
    public static func number(_ reference: String) -> Double? {
        Double(reference.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: ",", with: ""))
    }

    /// The last number in an answer, as exact-match extractors for GSM8K take it.
    public static func lastNumber(in answer: String) -> Double? {
        var last: Double?
        var current = ""
        func flush() {
            let cleaned = current.replacingOccurrences(of: ",", with: "")
            let trimmed = cleaned.hasSuffix(".") ? String(cleaned.dropLast()) : cleaned
            if let value = Double(trimmed), trimmed.contains(where: \.isNumber) { last = value }
            current = ""
        }
        for character in answer {
            if character.isASCII && (character.isNumber || character == "." || character == ",")
                || (character == "-" && current.isEmpty)
            {
                current.append(character)
            } else {
                flush()
            }
        }
        flush()
        return last
    }

    /// 1 when the answer's last number equals the reference, else 0.
    public static func exactMatch(answer: String, reference: Double) -> Double {
        guard let value = lastNumber(in: answer) else { return 0 }
        return abs(value - reference) < 1e-9 * max(1, abs(reference)) ? 1 : 0
    }
}
