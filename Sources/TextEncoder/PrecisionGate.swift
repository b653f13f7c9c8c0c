import Foundation
import RouterVocabulary

/// The check a reduced-precision encoder passes at load: its embeddings of a fixed set of texts
/// must stay within `minimumCosine` of fp32's, or the encoder is refused.
public enum PrecisionGate {
    public static let minimumCosine: Float = 0.99

    /// Texts of the kinds routed prompts are: short and long, chat, code, maths, other languages.
    public static let texts: [String] = [
        "hi",
        "What is the capital of Australia?",
        "Explain the difference between a process and a thread, with an example.",
        "Write a haiku about autumn leaves falling into a quiet river.",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
        "Solve for x: 3x^2 - 12x + 9 = 0, and show each step.",
        "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nWhy is this slow, and how would you make it fast?",
        "SELECT name, COUNT(*) FROM orders JOIN users ON orders.user_id = users.id GROUP BY name HAVING COUNT(*) > 5;",
        "Which of the following is a prime number? (A) 21 (B) 27 (C) 29 (D) 33",
        "Translate into French: The meeting has been moved to Thursday afternoon because the director is travelling.",
        "¿Cuál es la diferencia entre ser y estar? Dame tres ejemplos.",
        "量子コンピュータとは何ですか？簡単に説明してください。",
        "Compose a formal letter to a landlord asking for the heating to be repaired before winter, mentioning that it has been broken for three weeks.",
        "Summarise the causes of the First World War in five bullet points, covering alliances, militarism, imperialism, nationalism and the assassination in Sarajevo.",
        "You are a helpful assistant. The user says: my laptop makes a clicking noise and will not boot past the logo. What should I check first, and in what order?",
        "Given a binary tree, return the level order traversal of its nodes' values (from left to right, level by level). Write the solution in Python with an explanation of its time and space complexity, and discuss how you would adapt it to return the levels in reverse order.",
        String(
            repeating:
                "The committee reviewed the quarterly figures, noted that revenue had grown while costs stayed flat, and asked for a forecast of next year's hiring. ",
            count: 6),
        "asdf qwer 1234 !!! ??? ### $$$",
    ]

    /// What int8 measures its activations' ranges on at load: other texts than the gate's, so the
    /// gate checks what calibration did not see.
    public static let calibrationTexts: [String] = [
        "How do I reverse a linked list in place? Please give code in C and explain it.",
        "What were the main economic effects of the industrial revolution in Britain?",
        "A train leaves at 3:15 pm and travels 240 km at 80 km/h. When does it arrive?",
        "Give me a recipe for a vegetarian lasagna that serves six people.",
        "Is it grammatically correct to say 'less people' or 'fewer people'? Explain why.",
        "Write a short story, under 200 words, about a robot that learns to paint.",
        "Welche Sehenswürdigkeiten sollte man in Berlin an einem Wochenende besuchen?",
        "Prove that the square root of 2 is irrational.",
        "ok",
        "Compare TCP and UDP: reliability, ordering, latency, and when to use each. Include an example application for both, and say how congestion control differs between them.",
        "fn main() { let v: Vec<i32> = (1..=10).filter(|x| x % 2 == 0).collect(); println!(\"{:?}\", v); } // what does this print?",
        "The patient is a 54-year-old man with chest pain radiating to the left arm for two hours, sweating and shortness of breath. What is the most likely diagnosis and the first steps of management?",
    ]

    /// The lowest cosine between `candidate`'s and `reference`'s embeddings of `texts` (one batch
    /// each), and the text it was found on.
    public static func lowestCosine(
        of candidate: SentenceEncoder, to reference: SentenceEncoder, on texts: [String] = texts, policy: LongTextPolicy = .head
    ) -> (cosine: Float, text: String) {
        let ours = candidate.embed(texts, policy: policy)
        let theirs = reference.embed(texts, policy: policy)
        var lowest: (cosine: Float, text: String) = (1, "")
        for (index, text) in texts.enumerated() {
            let cosine = cosine(ours[index], theirs[index])
            if cosine < lowest.cosine || lowest.text.isEmpty { lowest = (cosine, text) }
        }
        return lowest
    }

    /// The cosine of two embeddings: both are L2-normalised, so their dot product.
    public static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 }
    }
}
