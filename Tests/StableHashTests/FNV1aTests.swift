import StableHash
import Testing

@Suite struct FNV1aTests {
    /// The reference vectors of FNV-1a 64 (draft-eastlake-fnv), so hashes written by
    /// older builds (decision logs, training splits) keep their meaning.
    @Test(arguments: [("", 0xcbf2_9ce4_8422_2325 as UInt64), ("a", 0xaf63_dc4c_8601_ec8c), ("foobar", 0x8594_4171_f739_67e8)])
    func referenceVectors(text: String, expected: UInt64) {
        #expect(FNV1a.hash(text) == expected)
        #expect(FNV1a.hash(bytes: Array(text.utf8)) == expected)
    }

    @Test func aBasisKeysTheHash() {
        #expect(FNV1a.hash("prompt", basis: 1) != FNV1a.hash("prompt"))
        #expect(FNV1a.hash("prompt", basis: FNV1a.offsetBasis) == FNV1a.hash("prompt"))
    }
}
