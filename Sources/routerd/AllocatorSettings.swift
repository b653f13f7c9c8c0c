import CMalloc

/// glibc malloc settings for a long-running daemon, applied before anything is loaded.
///
/// Left at glibc's defaults, routerd's resident memory swung by 40 MB and stepped up over
/// a soak (docs/RELIABILITY.md, "Soak"), with nothing leaking: a free of a large mmapped
/// buffer (an old generation's weights, a batch's activations) raises glibc's mmap
/// threshold to that size, so later buffers of that size come from the heap, where
/// fragmentation keeps their pages after they are freed; and each thread that allocates
/// (event loops, compute, I/O and encoder threads) may get an arena of its own, up to
/// 8 per core, each holding freed pages.
enum AllocatorSettings {
    /// Buffers from this size up are mmapped, and unmapped when freed. Setting it turns
    /// glibc's moving threshold off; 128 KiB is where glibc starts.
    static let mmapThreshold: Int32 = 128 * 1024

    static func apply(cores: Int) {
        // Each call returns 1 on success; a failure leaves glibc's default, which only costs memory.
        _ = mallopt(M_MMAP_THRESHOLD, mmapThreshold)
        // One arena per core: on a machine of a few cores, no more threads than that run at once.
        _ = mallopt(M_ARENA_MAX, Int32(max(2, min(cores, 64))))
    }
}
