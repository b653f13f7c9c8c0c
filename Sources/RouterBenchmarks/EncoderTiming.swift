import Dispatch
import TextEncoder

/// What the encoder benchmark measures with: a forward pass's FLOPs, repeated timings, and prose
/// cut to an exact token count.
public enum EncoderTiming {
    /// FLOPs of one forward pass: the dense layers per token plus attention.
    public static func flops(tokens: Int) -> Double {
        let h = 384.0
        let perTokenPerLayer = 2 * (4 * h * h + 2 * h * 1536)
        let attentionPerLayer = 4 * Double(tokens * tokens) * h
        return 6 * (Double(tokens) * perTokenPerLayer + attentionPerLayer)
    }

    /// The median wall time of `body` over repeated calls for about `seconds`.
    public static func median(seconds: Double, _ body: () -> Void) -> Double { timings(seconds: seconds, body).median }

    /// The median and the fastest wall time of `body` over repeated calls for about `seconds`.
    public static func timings(seconds: Double, _ body: () -> Void) -> (median: Double, fastest: Double) {
        var times: [Double] = []
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        while times.count < 3 || (DispatchTime.now().uptimeNanoseconds < deadline && times.count < 100_000) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        times.sort()
        return (times[times.count / 2], times[0])
    }

    /// A prefix of the prose with exactly `count` word pieces.
    public static func text(withPieces count: Int, encoder: SentenceEncoder) -> String {
        let words = prose.split(separator: " ")
        var low = 1
        var high = words.count
        while low < high {
            let middle = (low + high) / 2
            if encoder.tokenizer.wordPieces(words.prefix(middle).joined(separator: " ")).count < count { low = middle + 1 } else { high = middle }
        }
        return words.prefix(low).joined(separator: " ")
    }

    /// Ordinary English prose, long enough for 256 tokens.
    public static let prose = """
        The history of the printing press begins in the middle of the fifteenth century, when Johannes Gutenberg, a goldsmith \
        from Mainz, combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books \
        far faster than any scribe. Before his invention, most books in Europe were copied by hand, a slow and expensive process \
        that kept written knowledge in the hands of monasteries, universities and wealthy patrons. Within a few decades presses \
        had spread to more than two hundred cities, and millions of volumes were in circulation. Scholars could compare identical \
        copies of a text, errors could be corrected in later editions, and new ideas travelled across borders in weeks rather \
        than years. Historians still debate how much the press caused the Reformation, the scientific revolution and the rise \
        of literacy, but few doubt that it changed how people learned, argued and governed themselves. Newspapers, pamphlets and \
        scientific journals followed, each creating new audiences and new kinds of public conversation. Today, when we ask a \
        language model to summarise an article or answer a question, we rely on the same basic promise that Gutenberg made: \
        that information, once written down, can be copied cheaply, shared widely and read by anyone who wants to understand it. \
        The economics of that promise have shifted many times, from paper and ink to radio waves, fibre optic cables and \
        data centres, yet the underlying desire to reach more readers at lower cost has remained remarkably stable.
        """
}
