import CBLAS

/// The k-nearest-neighbour baseline of many-model routing: a prompt's predicted quality for a
/// model is the mean observed quality of the k training prompts most similar to it (cosine
/// of embeddings), missing observations left out. No training beyond storing the prompts.
public struct NearestNeighbourQuality: Sendable {
    public let k: Int
    let dimension: Int
    /// [prompts × dimension], L2-normalised.
    let embeddings: [Float]
    /// [prompts][models]
    let quality: [[Float?]]
    let modelCount: Int

    public init(k: Int, embeddings: [[Float]], quality: [[Float?]]) {
        self.k = k
        dimension = embeddings.first?.count ?? 0
        self.embeddings = embeddings.flatMap { $0 }
        self.quality = quality
        modelCount = quality.first?.count ?? 0
    }

    /// Predicted quality of every model for each query embedding.
    public func predict(_ queries: [[Float]]) -> [[Double]] {
        let count = quality.count
        guard count > 0 else { return queries.map { _ in [Double](repeating: 0.5, count: modelCount) } }
        var predictions: [[Double]] = []
        for begin in stride(from: 0, to: queries.count, by: 256) {
            let batch = Array(queries[begin..<min(begin + 256, queries.count)])
            var similarity = [Float](repeating: 0, count: batch.count * count)
            let flat = batch.flatMap { $0 }
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(batch.count), Int32(count), Int32(dimension), 1, flat, Int32(dimension), embeddings,
                Int32(dimension), 0, &similarity, Int32(count))
            for row in 0..<batch.count {
                let scores = similarity[row * count..<(row + 1) * count]
                let nearest = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(k)
                var total = [Double](repeating: 0, count: modelCount)
                var seen = [Double](repeating: 0, count: modelCount)
                for neighbour in nearest {
                    for model in 0..<modelCount {
                        if let value = quality[neighbour - row * count][model] {
                            total[model] += Double(value)
                            seen[model] += 1
                        }
                    }
                }
                predictions.append((0..<modelCount).map { seen[$0] > 0 ? total[$0] / seen[$0] : 0.5 })
            }
        }
        return predictions
    }
}
