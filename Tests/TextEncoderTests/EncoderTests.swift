import Foundation
import RouterVocabulary
import RouterdTestSupport
import Synchronization
import Testing

@testable import TextEncoder

@Suite(.requires(.encoderModel))
struct GoldenTests {
    @Test(.requires(.encoderGolden))
    func tokenIDsMatchTheReferenceExactly() throws {
        let encoder = try #require(EncoderFixture.encoder)
        for golden in try EncoderFixture.golden() {
            #expect(encoder.tokenIDs(golden.text) == golden.ids, "\(golden.text.debugDescription)")
        }
    }

    /// Both kernels for the linear layers compute the reference embeddings in fp32.
    @Test(
        .requires(.encoderGolden), arguments: LinearKernel.allCases)
    func embeddingsMatchTheReference(kernel: LinearKernel) throws {
        let encoder =
            kernel == .onednn
            ? try #require(EncoderFixture.encoder) : try SentenceEncoder(modelDirectory: EncoderFixture.modelDirectory, kernel: kernel)
        #expect(encoder.kernel == kernel)
        let goldens = try EncoderFixture.golden()
        var worst = 1.0
        for golden in goldens {
            let cosine = EncoderFixture.cosine(encoder.embed(golden.text), golden.embedding)
            worst = min(worst, cosine)
            #expect(cosine >= 0.9999, "\(golden.text.prefix(40).debugDescription): cosine \(cosine)")
        }
        print("golden embeddings (\(kernel.rawValue), \(encoder.kernelImplementation)): worst cosine \(worst) over \(goldens.count) texts")
        // The batch path packs texts together; it must give the same vectors.
        let batch = encoder.embed(goldens.map(\.text))
        for (golden, vector) in zip(goldens, batch) {
            #expect(EncoderFixture.cosine(vector, golden.embedding) >= 0.9999)
        }
    }
}

/// The reduced precisions: not exact, but within the accuracy gate's cosine of the reference.
@Suite(.requires(.encoderModel))
struct PrecisionTests {
    @Test(.requires(.encoderGolden))
    func int8StaysWithinTheGateOfTheReference() throws {
        let encoder = try SentenceEncoder.load(modelDirectory: EncoderFixture.modelDirectory, precision: .fixed(.int8))
        #expect(encoder.precision == .int8)
        #expect(encoder.precisionNote.hasPrefix("gate: lowest cosine 0.99"), "\(encoder.precisionNote)")
        let goldens = try EncoderFixture.golden()
        let batch = encoder.embed(goldens.map(\.text))
        var worst = 1.0
        for (golden, vector) in zip(goldens, batch) {
            let cosine = EncoderFixture.cosine(vector, golden.embedding)
            worst = min(worst, cosine)
            #expect(cosine >= Double(PrecisionGate.minimumCosine), "\(golden.text.prefix(40).debugDescription): cosine \(cosine)")
            // Not the fp32 vector: the int8 path really ran.
            #expect(cosine < 0.99999, "\(golden.text.prefix(40).debugDescription) is exact in int8")
        }
        print("golden embeddings (int8, \(encoder.kernelImplementation)): worst cosine \(worst) over \(goldens.count) texts")
        // Four bytes a weight in fp32, about one in int8.
        let fp32 = try #require(EncoderFixture.encoder)
        #expect(encoder.linearWeightBytes * 3 < fp32.linearWeightBytes)
    }

    /// bf16 runs where the CPU has AVX512-BF16 or AMX; elsewhere loading says so and names the CPU's
    /// instruction set.
    @Test(.requires(.encoderGolden))
    func bf16RunsWhereTheCPUHasItAndIsRefusedClearlyElsewhere() throws {
        guard EncoderPrecision.bf16.unsupportedReason == nil else {
            let error = #expect(throws: EncoderError.self) {
                try SentenceEncoder.load(modelDirectory: EncoderFixture.modelDirectory, precision: .fixed(.bf16))
            }
            #expect(error?.message.contains("bf16 needs AVX512-BF16 or AMX") == true, "\(String(describing: error))")
            #expect(error?.message.contains(EncoderPrecision.cpuInstructionSet) == true, "\(String(describing: error))")
            return
        }
        let encoder = try SentenceEncoder.load(modelDirectory: EncoderFixture.modelDirectory, precision: .fixed(.bf16))
        #expect(encoder.precision == .bf16)
        for golden in try EncoderFixture.golden() {
            #expect(EncoderFixture.cosine(encoder.embed(golden.text), golden.embedding) >= Double(PrecisionGate.minimumCosine))
        }
    }

    @Test func autoKeepsTheFastestPrecisionThatPassesTheGate() throws {
        let encoder = try SentenceEncoder.load(modelDirectory: EncoderFixture.modelDirectory, precision: .auto)
        // Every precision is timed or said to be unavailable, and the one kept passed the gate.
        #expect(encoder.precisionNote.hasPrefix("auto, timed on the gate texts: fp32 "), "\(encoder.precisionNote)")
        for precision in EncoderPrecision.allCases {
            #expect(encoder.precisionNote.contains(precision.rawValue + " "), "\(precision) missing from \(encoder.precisionNote)")
        }
        // The precision kept is the fastest of those timed (fp32 always is).
        let timed = encoder.precisionNote.matches(of: /(fp32|int8|bf16) ([0-9.]+) ms/).map { (String($0.1), Double($0.2)!) }
        #expect(timed.contains { $0.0 == "fp32" }, "\(encoder.precisionNote)")
        let fastest = try #require(timed.map(\.1).min())
        let kept = try #require(timed.first { $0.0 == encoder.precision.rawValue }, "\(encoder.precisionNote)")
        #expect(kept.1 == fastest, "kept \(encoder.precision) of \(timed)")
        let reference = try #require(EncoderFixture.encoder)
        #expect(PrecisionGate.lowestCosine(of: encoder, to: reference).cosine >= PrecisionGate.minimumCosine)
        // openblas runs only fp32, so auto there keeps fp32 and says why.
        let blas = try SentenceEncoder.load(modelDirectory: EncoderFixture.modelDirectory, kernel: .openblas, precision: .auto)
        #expect(blas.precision == .fp32)
        #expect(blas.precisionNote.contains("int8 needs kernel onednn"), "\(blas.precisionNote)")
        #expect(throws: EncoderError.self) {
            try SentenceEncoder.load(modelDirectory: EncoderFixture.modelDirectory, kernel: .openblas, precision: .fixed(.int8))
        }
    }

    /// The gate measures: fp32 against itself is exact; int8 is close but not exact, and the gate
    /// names the text it did worst on.
    @Test func theGateComparesEmbeddings() throws {
        let reference = try #require(EncoderFixture.encoder)
        #expect(PrecisionGate.lowestCosine(of: reference, to: reference).cosine > 0.99999)
        let int8 = try SentenceEncoder(modelDirectory: EncoderFixture.modelDirectory, precision: .int8)
        let lowest = PrecisionGate.lowestCosine(of: int8, to: reference)
        #expect(lowest.cosine < 0.99999 && lowest.cosine >= PrecisionGate.minimumCosine, "\(lowest)")
        #expect(PrecisionGate.texts.contains(lowest.text))
    }
}

@Suite(.requires(.encoderModel))
struct TokenizerTests {
    /// Expected word pieces written by hand from BERT's rules; ids come from vocab.txt directly.
    @Test(arguments: [
        ("unaffable", ["una", "##ffa", "##ble"]),  // no "unaf…" prefix or "##ffab" in this vocab
        ("Héllo WÖRLD", ["hello", "world"]),
        ("don't", ["don", "'", "t"]),
        ("a.b,c!", ["a", ".", "b", ",", "c", "!"]),
        ("hel\u{0}lo\u{FFFD}", ["hello"]),
        ("hel\u{200D}lo", ["hello"]),  // a format character (Cf) is dropped
        ("hel\u{7}lo", ["hello"]),  // a control character is dropped
        ("hello\u{3000}world", ["hello", "world"]),  // ideographic space separates
        ("hello\u{2028}world", ["hello", "world"]),  // line separator separates
        ("中文", ["中", "文"]),
        ("hi中", ["hi", "中"]),
        ("naïve café", ["naive", "cafe"]),
        ("[CLS]", ["[", "cl", "##s", "]"]),  // special tokens in text are just text
        ("—", ["—"]),  // Unicode dash punctuation
        ("$5", ["$", "5"]),
        ("", []),
        (" \t\n ", []),
    ])
    func wordPiecesFollowBertRules(text: String, expected: [String]) throws {
        let encoder = try #require(EncoderFixture.encoder)
        let expectedIDs = try expected.map { try #require(EncoderFixture.vocabulary[$0], "'\($0)' is not in vocab.txt") }
        #expect(encoder.tokenizer.wordPieces(text) == expectedIDs, "\(text.debugDescription)")
    }

    @Test func aWordOverOneHundredCharactersIsUnknown() throws {
        let encoder = try #require(EncoderFixture.encoder)
        let unknown = try #require(EncoderFixture.vocabulary["[UNK]"])
        #expect(encoder.tokenizer.wordPieces(String(repeating: "a", count: 101)) == [unknown])
        #expect(!encoder.tokenizer.wordPieces(String(repeating: "a", count: 100)).contains(unknown))
        // Counted in characters, not bytes: 60 two-byte letters are one word of 60.
        #expect(!encoder.tokenizer.wordPieces(String(repeating: "é", count: 60)).contains(unknown))
    }

    /// A limited read gives the full tokenization's first pieces, and a word of a megabyte costs
    /// one [UNK] without being buffered.
    @Test func aLimitedReadIsThePrefixOfTheFullOne() throws {
        let encoder = try #require(EncoderFixture.encoder)
        let text = (0..<600).map { "Wörd\($0 % 13), naïve-café \($0)!" }.joined(separator: " ")
        let full = encoder.tokenizer.wordPieces(text)
        for limit in [0, 1, 7, 254, 255, full.count - 1, full.count, full.count + 5] {
            #expect(encoder.tokenizer.wordPieces(text, limit: limit) == Array(full.prefix(limit)), "limit \(limit)")
        }
        let unknown = try #require(EncoderFixture.vocabulary["[UNK]"])
        let hi = try #require(EncoderFixture.vocabulary["hi"])
        #expect(encoder.tokenizer.wordPieces(String(repeating: "a", count: 1 << 20) + " hi") == [unknown, hi])
    }

    /// Under `.windows` a text over `max_windows` is refused, naming the limit; one that fits gets
    /// every window; head and tail take one window of any text.
    @Test func windowsAreCountedAgainstTheLimit() throws {
        let encoder = try #require(EncoderFixture.encoder)
        let limits = EncodingLimits(maxWindows: 3, maxTokens: 100_000)
        // 254 + 2 × 127 = 508 word pieces fit in three windows; 509 need a fourth.
        let fits = String(repeating: "x ", count: 508)
        let over = String(repeating: "x ", count: 509)
        #expect(try encoder.tokenize(fits, policy: .windows, limits: limits).windows.count == 3)
        #expect(encoder.tokenize(over, policy: .windows).windows.count == 4)
        do {
            _ = try encoder.tokenize(over, policy: .windows, limits: limits)
            Issue.record("a text of four windows passed max_windows 3")
        } catch {
            #expect(error.message.contains("limits.max_windows is 3"), "\(error)")
        }
        #expect(try encoder.tokenize(over + over, policy: .head, limits: limits).positions == 256)
        #expect(try encoder.tokenize(over + over, policy: .tail, limits: limits).positions == 256)
    }

    @Test func sequencesAreWrappedAndTruncatedTo256() throws {
        let encoder = try #require(EncoderFixture.encoder)
        let cls = try #require(EncoderFixture.vocabulary["[CLS]"])
        let sep = try #require(EncoderFixture.vocabulary["[SEP]"])
        let words = (0..<400).map { "word\($0 % 10)" }.joined(separator: " ")
        let head = encoder.tokenIDs(words, policy: .head)
        let tail = encoder.tokenIDs(words, policy: .tail)
        #expect(head.count == 256 && tail.count == 256)
        #expect(head.first == cls && head.last == sep && tail.first == cls && tail.last == sep)
        let pieces = encoder.tokenizer.wordPieces(words)
        #expect(Array(head[1..<255]) == Array(pieces.prefix(254)))
        #expect(Array(tail[1..<255]) == Array(pieces.suffix(254)))
        #expect(encoder.tokenIDs("hi") == [cls, try #require(EncoderFixture.vocabulary["hi"]), sep])
    }
}

@Suite(.requires(.encoderModel))
struct EmbeddingTests {
    @Test func embeddingsAreUnitVectorsAndSimilarTextsAreClose() throws {
        let encoder = try #require(EncoderFixture.encoder)
        let vectors = encoder.embed([
            "How do I sort a list in Python?", "What is the best way to order an array in Python?", "Write a poem about the sea.",
        ])
        let (sort, order, poem) = (vectors[0], vectors[1], vectors[2])
        #expect(abs(sort.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5)
        #expect(sort.count == 384)
        #expect(EncoderFixture.cosine(sort, order) > EncoderFixture.cosine(sort, poem) + 0.3)
    }

    /// Texts of more positions than one pass takes are embedded in several passes, each text
    /// as if it were alone.
    @Test func aBatchLongerThanOnePassIsSplitAndEachTextIsUnchanged() throws {
        let encoder = try #require(EncoderFixture.encoder)
        let texts = (0..<20).map { index in (0..<300).map { "w\(($0 * 7 + index) % 50)" }.joined(separator: " ") }
        let tokenized = texts.map { encoder.tokenize($0, policy: .head) }
        #expect(tokenized.reduce(0) { $0 + $1.positions } > 2 * 2048, "the batch spans at least three passes")
        let together = encoder.embed(tokenized: tokenized)
        for (index, text) in texts.enumerated() {
            #expect(EncoderFixture.cosine(together[index], encoder.embed(text)) > 0.99999, "text \(index)")
        }
    }

    @Test func longTextPoliciesDifferOnlyForLongTexts() throws {
        let encoder = try #require(EncoderFixture.encoder)
        let short = "What is the capital of France?"
        let head = encoder.embed(short, policy: .head)
        #expect(encoder.embed(short, policy: .tail) == head)
        #expect(EncoderFixture.cosine(encoder.embed(short, policy: .windows), head) > 0.99999)

        // A shared few-shot prefix longer than the window, then different questions.
        let prefix = String(repeating: "Question: what is two plus two? Answer: four. ", count: 40)
        let a = prefix + "Now explain the causes of the French revolution in detail."
        let b = prefix + "Now write a haiku about autumn leaves falling."
        #expect(encoder.embed(a, policy: .head) == encoder.embed(b, policy: .head), "head sees only the shared prefix")
        #expect(EncoderFixture.cosine(encoder.embed(a, policy: .tail), encoder.embed(b, policy: .tail)) < 0.95, "tail sees the questions")
        let windows = encoder.embed(a, policy: .windows)
        #expect(abs(windows.reduce(0) { $0 + $1 * $1 } - 1) < 1e-5)
        #expect(windows != encoder.embed(b, policy: .windows))
    }

    @Test func windowsCoverTheWholeText() {
        #expect(SentenceEncoder.windowStarts(count: 100, window: 254) == [0])
        #expect(SentenceEncoder.windowStarts(count: 254, window: 254) == [0])
        #expect(SentenceEncoder.windowStarts(count: 255, window: 254) == [0, 1])
        #expect(SentenceEncoder.windowStarts(count: 600, window: 254) == [0, 127, 254, 346])
    }

    @Test func concurrentCallersGetTheSameVectorsAsOne() async throws {
        let encoder = try #require(EncoderFixture.encoder)
        let texts = (0..<16).map { "Concurrent prompt number \($0) about topic \($0 * 7)" }
        let sequential = texts.map { encoder.embed($0) }
        let concurrent = await withTaskGroup(of: (Int, [Float]).self) { group in
            for (index, text) in texts.enumerated() { group.addTask { (index, encoder.embed(text)) } }
            return await group.reduce(into: [Int: [Float]]()) { $0[$1.0] = $1.1 }
        }
        for index in texts.indices { #expect(concurrent[index] == sequential[index]) }
    }
}

@Suite struct ModelFileTests {
    @Test func aMissingModelNamesTheFileAndTheFix() throws {
        do {
            _ = try SentenceEncoder(modelDirectory: "/nonexistent/model")
            Issue.record("loaded a missing model")
        } catch {
            #expect(error.message.contains("/nonexistent/model/model.safetensors is missing"))
            #expect(error.message.contains("make setup"))
        }
    }
}

@Suite struct EmbeddingCacheTests {
    func key(_ text: String) -> EmbeddingCache.Key { EmbeddingCache.Key(namespace: 0, policy: .head, text: text) }

    @Test func aKeyDependsOnTheNamespaceThePolicyAndEveryByteOfTheText() {
        let long = String(repeating: "x", count: 1 << 20)
        let base = EmbeddingCache.Key(namespace: 1, policy: .head, text: long)
        #expect(EmbeddingCache.Key(namespace: 1, policy: .head, text: long) == base)
        #expect(EmbeddingCache.Key(namespace: 2, policy: .head, text: long) != base)
        #expect(EmbeddingCache.Key(namespace: 1, policy: .tail, text: long) != base)
        #expect(EmbeddingCache.Key(namespace: 1, policy: .head, text: long + "y") != base)
        // The key is the same size however long the text: what bounds the cache in bytes.
        #expect(MemoryLayout<EmbeddingCache.Key>.size == 16)
    }

    @Test func leastRecentlyUsedEntriesAreEvicted() {
        let cache = EmbeddingCache(capacity: 2)
        cache.insert([1], for: key("a"))
        cache.insert([2], for: key("b"))
        #expect(cache.value(for: key("a")) == [1])  // a is now the most recent
        cache.insert([3], for: key("c"))  // evicts b
        #expect(cache.value(for: key("b")) == nil)
        #expect(cache.value(for: key("a")) == [1])
        #expect(cache.value(for: key("c")) == [3])
        let counters = cache.counters
        #expect(counters.hits == 3 && counters.misses == 1 && counters.entries == 2)
    }

    @Test func aZeroCapacityCacheStoresNothing() {
        let cache = EmbeddingCache(capacity: 0)
        cache.insert([1], for: key("a"))
        #expect(cache.value(for: key("a")) == nil)
    }

    @Test func manyInsertionsKeepTheNewest() {
        let cache = EmbeddingCache(capacity: 100)
        for index in 0..<1000 { cache.insert([Float(index)], for: key("k\(index)")) }
        #expect(cache.counters.entries == 100)
        #expect(cache.value(for: key("k999")) == [999])
        #expect(cache.value(for: key("k900")) == [900])
        #expect(cache.value(for: key("k899")) == nil)
    }

    /// The soak's goal, a million distinct prompts, on the cache alone (the daemon's encoder
    /// embeds a few hundred a second, so a soak reaches a fraction of it; docs/RELIABILITY.md).
    @Test func aMillionDistinctTextsStayWithinTheCapacity() {
        let cache = EmbeddingCache(capacity: 10_000)
        var largest = 0
        for index in 0..<1_000_000 {
            let text = "prompt \(index)"
            if cache.value(for: key(text)) == nil { cache.insert([Float(index)], for: key(text)) }
            if index % 1000 == 0 { largest = max(largest, cache.counters.entries) }
        }
        let counters = cache.counters
        #expect(counters.entries == 10_000 && largest <= 10_000)
        #expect(counters.misses == 1_000_000 && counters.hits == 0)
        #expect(cache.value(for: key("prompt 999999")) == [999_999])
        #expect(cache.value(for: key("prompt 989999")) == nil)
    }
}

/// The batcher with a stand-in encoder whose first pass can be held, so which texts share a
/// pass is deterministic.
@Suite struct EmbeddingBatcherTests {
    /// A stand-in encoder: a text's vector is its length and first byte; records each pass.
    /// Its cost is a text's length in bytes, and a text starting "!" fails to prepare.
    final class Recorder: BatchEncoder {
        private let held: DispatchSemaphore?
        private let passes = Mutex<[[String]]>([])

        init(holdFirstPass: Bool) { held = holdFirstPass ? DispatchSemaphore(value: 0) : nil }

        func embed(_ texts: [String]) -> [[Float]] {
            let first = passes.withLock { passes in
                passes.append(texts)
                return passes.count == 1
            }
            if first { held?.wait() }
            return texts.map { Self.vector($0) }
        }

        func prepare(_ text: String, policy: LongTextPolicy, limits: EncodingLimits) throws(EncodingLimitError) -> String {
            guard !text.hasPrefix("!") else { throw EncodingLimitError("refused \(text)") }
            return text
        }

        func cost(_ prepared: String) -> Int { prepared.utf8.count }

        func release() { held?.signal() }
        var recorded: [[String]] { passes.withLock { $0 } }

        static func vector(_ text: String) -> [Float] { [Float(text.utf8.count), Float(text.utf8.first ?? 0)] }
    }

    /// Waits (up to 10 s) until `condition` holds.
    func eventually(_ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(10)
        while !condition(), Date() < deadline { usleep(1000) }
    }

    @Test func callsQueuedDuringAPassShareTheNextOneAndEachGetsItsOwnVectors() {
        let recorder = Recorder(holdFirstPass: true)
        let batcher = EmbeddingBatcher(limits: .init(maxBatch: 32, maxWait: 0, workers: 1), name: "test", encoder: recorder)
        final class Answers: Sendable {
            let byCall = Mutex<[String: [[Float]]]>([:])
        }
        let answers = Answers()
        let group = DispatchGroup()
        func submit(_ texts: [String]) {
            group.enter()
            batcher.submit(texts) { outcome in
                answers.byCall.withLock { $0[texts.joined(separator: "|")] = try? outcome.get() }
                group.leave()
            }
        }
        submit(["first"])
        eventually { recorder.recorded.count == 1 }
        // The worker is inside its first pass: these three wait, and then go together,
        // "b" once although two calls ask for it.
        submit(["a", "bb"])
        submit(["bb"])
        submit(["ccc", "a", "dddd"])
        recorder.release()
        #expect(group.wait(timeout: .now() + 10) == .success)
        #expect(recorder.recorded == [["first"], ["a", "bb", "ccc", "dddd"]])
        for (key, vectors) in answers.byCall.withLock({ $0 }) {
            #expect(vectors == key.split(separator: "|").map { Recorder.vector(String($0)) }, "\(key)")
        }
        #expect(answers.byCall.withLock { $0.count } == 4)
        let counters = batcher.counters
        #expect(counters.batches == 2 && counters.calls == 4 && counters.texts == 5 && counters.largestBatch == 4)
    }

    @Test func aPassTakesAtMostTheBatchSizeAndALargerCallGoesAlone() {
        let recorder = Recorder(holdFirstPass: true)
        let batcher = EmbeddingBatcher(limits: .init(maxBatch: 2, maxWait: 0, workers: 1), name: "test", encoder: recorder)
        let group = DispatchGroup()
        for texts in [["first"], ["a"], ["b"], ["c"], ["d", "e", "f"], ["g"]] {
            group.enter()
            batcher.submit(texts) { _ in group.leave() }
            if texts == ["first"] { eventually { recorder.recorded.count == 1 } }
        }
        recorder.release()
        #expect(group.wait(timeout: .now() + 10) == .success)
        #expect(recorder.recorded == [["first"], ["a", "b"], ["c"], ["d", "e", "f"], ["g"]])
    }

    @Test func aLoneCallerIsEmbeddedAtOnceAndBlockingCallsWork() {
        let recorder = Recorder(holdFirstPass: false)
        // An hour's wait for company: no batch has been shared, so it must not apply. A lone call that
        // waited would miss the guard below by an hour, not by a scheduling hiccup.
        let batcher = EmbeddingBatcher(limits: .init(maxBatch: 32, maxWait: 3600, workers: 2), name: "test", encoder: recorder)
        let done = DispatchSemaphore(value: 0)
        final class Answer: Sendable { let embeddings = Mutex<[[Float]]?>(nil) }
        let result = Answer()
        Thread {
            result.embeddings.withLock { $0 = try? batcher.embed(["alone"]) }
            done.signal()
        }.start()
        #expect(done.wait(timeout: .now() + 60) == .success, "a lone call waited for company")
        #expect(result.embeddings.withLock { $0 } == [Recorder.vector("alone")])
        #expect((try? batcher.embed([])) == [])
    }

    /// A call over its limits is refused as its texts are prepared, without a pass of its own and
    /// without failing the calls batched with it.
    @Test func aCallOverItsLimitsIsRefusedAndTheCallsBatchedWithItAreServed() throws {
        let recorder = Recorder(holdFirstPass: true)
        let batcher = EmbeddingBatcher(limits: .init(maxBatch: 32, maxWait: 0, workers: 1), name: "test", encoder: recorder)
        final class Outcomes: Sendable { let byCall = Mutex<[String: Result<[[Float]], EncodingLimitError>]>([:]) }
        let outcomes = Outcomes()
        let group = DispatchGroup()
        func submit(_ texts: [String], maxTokens: Int = 100) {
            group.enter()
            batcher.submit(texts, limits: EncodingLimits(maxWindows: 1, maxTokens: maxTokens)) { outcome in
                outcomes.byCall.withLock { $0[texts.joined(separator: "|")] = outcome }
                group.leave()
            }
        }
        submit(["first"])
        eventually { recorder.recorded.count == 1 }
        submit(["ok", "fine"])
        submit(["bbbbbb", "cccccc"], maxTokens: 11)  // 12 bytes: over its own limit
        submit(["ok", "!refused"])
        recorder.release()
        #expect(group.wait(timeout: .now() + 10) == .success)
        #expect(recorder.recorded == [["first"], ["ok", "fine"]])
        let byCall = outcomes.byCall.withLock { $0 }
        #expect(try byCall["ok|fine"]?.get() == [Recorder.vector("ok"), Recorder.vector("fine")])
        #expect(throws: EncodingLimitError.self) { try byCall["bbbbbb|cccccc"]?.get() }
        #expect(throws: EncodingLimitError.self) { try byCall["ok|!refused"]?.get() }
        if case .failure(let error) = byCall["bbbbbb|cccccc"] { #expect(error.message.contains("limits.max_tokens is 11")) }
    }
}

@Suite struct BLASKernelTests {
    @Test func theBestCoreFollowsTheCPUFlags() {
        #expect(BLASKernels.bestCore(flags: ["avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq", "avx512_bf16"]) == "Cooperlake")
        #expect(BLASKernels.bestCore(flags: ["avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq"]) == "SkylakeX")
        #expect(BLASKernels.bestCore(flags: ["avx2", "fma", "avx512f"]) == "Haswell", "AVX-512 foundation alone is not enough for SkylakeX kernels")
        #expect(BLASKernels.bestCore(flags: ["sse4_2"]) == nil)
    }
}
