import Foundation
import Glibc
import Synchronization

/// A slow network between a client and a TCP server on loopback: a proxy on a free port that holds
/// every chunk it relays, in either direction, for `delay` seconds before passing it on (a
/// round trip costs at least twice that, and each direction carries one chunk per delay).
/// For the fleet's fault tests, between routerd and PostgreSQL. Its threads end at ``stop()``.
public final class DelayingProxy: Sendable {
    public let port: Int
    private let listener: Int32
    private let delay: Double
    private let upstreamPort: Int
    private let sockets = Mutex<[Int32]>([])
    private let stopped = Atomic<Bool>(false)

    public init(to upstreamPort: Int, delay: Double) throws {
        self.delay = delay
        self.upstreamPort = upstreamPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        listener = fd
        var address = Self.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw HarnessError("the delaying proxy cannot listen: \(String(cString: strerror(errno)))") }
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.name = "delaying-proxy"
        thread.start()
    }

    deinit { stop() }

    /// Closes the listener and every relayed connection; the threads end.
    public func stop() {
        guard !stopped.exchange(true, ordering: .sequentiallyConsistent) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in sockets.withLock({ $0 }) {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
    }

    private static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    private func acceptLoop() {
        while !stopped.load(ordering: .relaxed) {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                if stopped.load(ordering: .relaxed) { return }
                continue
            }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: upstreamPort)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected else {
                close(client)
                close(server)
                continue
            }
            sockets.withLock { $0 += [client, server] }
            for (from, to) in [(client, server), (server, client)] {
                let thread = Thread { [self] in relay(from: from, to: to) }
                thread.start()
            }
        }
    }

    /// Reads a chunk, holds it for the delay, writes it; at the end of either side, ends both.
    private func relay(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(from, &buffer, buffer.count)
            guard count > 0 else { break }
            Thread.sleep(forTimeInterval: delay)
            var written = 0
            while written < count {
                let result = buffer.withUnsafeBytes { write(to, $0.baseAddress! + written, count - written) }
                guard result > 0 else { break }
                written += result
            }
            guard written == count else { break }
        }
        shutdown(from, Int32(SHUT_RDWR))
        shutdown(to, Int32(SHUT_RDWR))
    }
}
