import CBLAS

/// How familiar a prompt is to a ranking index: the cosine similarity of its k-th nearest indexed
/// prompt, as a percentile of the same figure for the index's own prompts (each left out of its
/// own neighbours). The k-nearest-neighbour similarity is the usual out-of-distribution score for
/// embeddings (Sun et al., "Out-of-Distribution Detection with Deep Nearest Neighbors", 2022); the
/// percentile makes it read the same for every index: about 5% of prompts like the index's own
/// fall below 0.05, and a prompt unlike any of them scores 0.
public struct Familiarity: Sendable {
    /// k: how many near neighbours a prompt needs to count as familiar (one near-duplicate does not).
    public static let neighbours = 10
    /// How many of the index's prompts the reference is computed from, spread evenly over it.
    public static let referenceSize = 512

    /// The k-th nearest similarity of the reference prompts, ascending.
    public let reference: [Float]
    /// The k used: ``neighbours``, or fewer for an index too small to have that many others.
    public let k: Int

    /// The reference of `index`: for up to ``referenceSize`` of its prompts, the similarity of
    /// each one's k-th nearest other prompt.
    public init(index: RankingIndex) {
        let count = index.promptCount
        let k = min(Self.neighbours, max(1, count - 1))
        self.k = k
        // An empty index (a cold start) has no reference: every prompt is then novel.
        let sample = min(Self.referenceSize, count)
        let rows = (0..<sample).map { $0 * count / sample }
        var reference: [Float] = []
        reference.reserveCapacity(sample)
        // Rows in blocks, so the similarity matrix held at once stays small for a large index.
        let block = 32
        var similarity = [Float](repeating: 0, count: block * count)
        var queries = [Float](repeating: 0, count: block * index.dimension)
        for start in stride(from: 0, to: rows.count, by: block) {
            let chunk = Array(rows[start..<min(start + block, rows.count)])
            for (position, row) in chunk.enumerated() {
                let offset = row * index.dimension
                for column in 0..<index.dimension { queries[position * index.dimension + column] = index.embeddings[offset + column] }
            }
            index.embeddings.withUnsafeBufferPointer { matrix in
                queries.withUnsafeBufferPointer { query in
                    similarity.withUnsafeMutableBufferPointer { out in
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(chunk.count), Int32(count), Int32(index.dimension), 1,
                            query.baseAddress, Int32(index.dimension), matrix.baseAddress, Int32(index.dimension), 0, out.baseAddress,
                            Int32(count))
                    }
                }
            }
            for (position, row) in chunk.enumerated() {
                var others = Array(similarity[position * count..<(position + 1) * count])
                others.remove(at: row)
                reference.append(others.isEmpty ? 0 : SimilarityRanker.largest(min(k, others.count), of: &others))
            }
        }
        self.reference = reference.sorted()
    }

    /// The familiarity of a prompt whose k-th nearest similarity is `similarity`: the share of the
    /// reference below it.
    public func percentile(of similarity: Float) -> Double {
        guard !reference.isEmpty else { return 0 }
        var low = 0
        var high = reference.count
        while low < high {
            let middle = (low + high) / 2
            if reference[middle] < similarity { low = middle + 1 } else { high = middle }
        }
        return Double(low) / Double(reference.count)
    }

    /// The familiarity of an embedding (of the index's dimension) among `pool`'s prompts: the
    /// index itself, or the index with what was learned online appended.
    public func familiarity(of embedding: UnsafeBufferPointer<Float>, among pool: RankingIndex) -> Double {
        precondition(embedding.count == pool.dimension)
        let count = pool.promptCount
        guard count > 0 else { return 0 }
        var similarity = pool.similarities(to: embedding)
        let kth = SimilarityRanker.largest(min(k, count), of: &similarity)
        return percentile(of: kth)
    }
}
