import Glibc

/// The daemon's append-only JSON-lines files (the feedback store's and the decision log) after a
/// crash: a write cut short leaves a last line without its newline, which was never acknowledged.
/// Opening such a file cuts it back to its last newline, so the next line starts on a line of its
/// own instead of being joined onto the fragment.
enum TornLine {
    /// Cuts the file open on `fd` (readable) back to its last newline when it does not end in one,
    /// and syncs the cut; returns the bytes dropped (nil if the file was whole), or why it could not.
    static func cut(_ fd: Int32) -> Result<Int?, TornLineError> {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(TornLineError(step: "stat")) }
        let size = Int(info.st_size)
        guard size > 0 else { return .success(nil) }
        var byte: UInt8 = 0
        guard pread(fd, &byte, 1, off_t(size - 1)) == 1 else { return .failure(TornLineError(step: "read")) }
        guard byte != UInt8(ascii: "\n") else { return .success(nil) }
        var end = size - 1
        var chunk = [UInt8](repeating: 0, count: 65_536)
        var cut = 0
        search: while end > 0 {
            let start = max(0, end - chunk.count)
            let count = end - start
            guard chunk.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, count, off_t(start)) }) == count else {
                return .failure(TornLineError(step: "read"))
            }
            for index in stride(from: count - 1, through: 0, by: -1) where chunk[index] == UInt8(ascii: "\n") {
                cut = start + index + 1
                break search
            }
            end = start
        }
        guard ftruncate(fd, off_t(cut)) == 0, fdatasync(fd) == 0 else { return .failure(TornLineError(step: "cut the torn last line of")) }
        return .success(size - cut)
    }
}

/// What failed, with errno's reason, for a message that names the file.
struct TornLineError: Error {
    let step: String
    let reason = String(cString: strerror(errno))
}
