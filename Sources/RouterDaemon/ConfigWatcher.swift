import Foundation
import Logging
import NIOPosix
import RouterConfig
import RouterEngine
import RouterProtocol
import ServiceLifecycle

/// Reloads when the config, a plugin descriptor or a file named by a router's
/// `path` parameter (weights, index, template) changes, if `reload.watch` is on.
///
/// inotify watches the folders holding those files, because editors and the
/// safe weights procedure replace a file by renaming another over it, which a
/// watch on the file itself would not see. Changes are debounced: the reload
/// runs once the files have been quiet for `reload.debounce_ms`. After each
/// reload the watched set follows the new config.
///
/// The first watches are made in `init`, before the socket listens, so no
/// client can change a file unseen between the start and the watcher's first
/// run; on a reload new folders are watched before old ones are dropped, so a
/// folder in both configs is never unwatched.
public struct ConfigWatcher: Service {
    let reloader: Reloader
    var engine: Engine { reloader.engine }
    let threadPool: NIOThreadPool
    let logger: Logger
    /// The inotify descriptor, or -1 when inotify is unavailable (then `unavailable` says why).
    private let inotify: Int32
    private let unavailable: String?
    /// Watch descriptor → watched folder, as made in `init`.
    private let initialWatches: [Int32: String]

    public init(reloader: Reloader, threadPool: NIOThreadPool, logger: Logger) {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        self.init(
            reloader: reloader, threadPool: threadPool, logger: logger, inotify: fd, unavailable: fd >= 0 ? nil : String(cString: strerror(errno)))
    }

    /// With the inotify descriptor given: -1 and a reason stand for an inotify that cannot be had (tests).
    init(reloader: Reloader, threadPool: NIOThreadPool, logger: Logger, inotify: Int32, unavailable: String?) {
        self.reloader = reloader
        self.threadPool = threadPool
        self.logger = logger
        self.inotify = inotify
        self.unavailable = unavailable
        initialWatches = inotify >= 0 ? Self.watch(Self.watchedFiles(reloader.engine.current.config), on: inotify, replacing: [:]) : [:]
    }

    public func run() async throws {
        let fd = inotify
        guard fd >= 0 else {
            // Without inotify the daemon still serves; only automatic reloads are lost. Returning
            // here would end this service, and with it the service group and the daemon.
            logger.warning(
                "reload.watch: inotify is unavailable, so changed files are not reloaded automatically; reload with SIGHUP or `routerctl reload`",
                metadata: ["error": "\(unavailable ?? "unknown")"])
            try? await gracefulShutdown()
            return
        }
        defer { close(fd) }
        // A reload may have come between init and now: follow the current config.
        var files = Self.watchedFiles(engine.current.config)
        var watches = Self.watch(files, on: fd, replacing: initialWatches)
        logger.debug("reload.watch: watching", metadata: ["files": "\(files.sorted())"])
        var lastChange: ContinuousClock.Instant?
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !Task.isCancelled {
            if Task.isShuttingDownGracefully { break }
            // Drain the events; note when one touched a watched file.
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                guard count > 0 else { break }
                var offset = 0
                while offset + MemoryLayout<inotify_event>.size <= count {
                    let (descriptor, length) = buffer.withUnsafeBytes { raw in
                        (
                            raw.loadUnaligned(fromByteOffset: offset, as: Int32.self),
                            Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                        )
                    }
                    let nameStart = offset + MemoryLayout<inotify_event>.size
                    let name = String(decoding: buffer[nameStart..<nameStart + length].prefix { $0 != 0 }, as: UTF8.self)
                    if let folder = watches[descriptor], files.contains((folder as NSString).appendingPathComponent(name)) {
                        lastChange = .now
                    }
                    offset = nameStart + length
                }
            }
            let debounce = engine.current.config.reload.debounceSeconds
            if let changed = lastChange, ContinuousClock.now - changed >= .milliseconds(Int(debounce * 1000)) {
                lastChange = nil
                await reloader.reload(trigger: "file change", on: threadPool)
                files = Self.watchedFiles(engine.current.config)
                watches = Self.watch(files, on: fd, replacing: watches)
                logger.debug("reload.watch: watching", metadata: ["files": "\(files.sorted())"])
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Watches the folders of `files`, adding the new ones before dropping those no
    /// longer needed; returns watch descriptor → folder.
    static func watch(_ files: Set<String>, on fd: Int32, replacing current: [Int32: String]) -> [Int32: String] {
        var watches: [Int32: String] = [:]
        for folder in Set(files.map { ($0 as NSString).deletingLastPathComponent }) {
            // Watching a folder again returns its existing descriptor.
            let descriptor = inotify_add_watch(fd, folder, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_ATTRIB))
            if descriptor >= 0 { watches[descriptor] = folder }
        }
        for descriptor in current.keys where watches[descriptor] == nil { inotify_rm_watch(fd, descriptor) }
        return watches
    }

    /// The config, the descriptors of the plugins in use, and every file a router's parameters name.
    static func watchedFiles(_ config: DaemonConfig) -> Set<String> {
        var files: Set<String> = [config.file]
        for descriptor in config.plugins.values { files.insert(descriptor.file) }
        for router in config.routers {
            files.formUnion(config.plugins[router.plugin]?.files(in: router.params) ?? [])
        }
        return files
    }
}
