import Fleet
import Logging
import RouterConfig
import RouterEngine
import RouterProtocol

extension DaemonConfig {
    /// Whether outcomes go to the fleet's outbox as well as the feedback files.
    public var sharesOutcomes: Bool { fleet?.share.contains(.outcomes) == true && feedback != nil }
}

extension FleetSync {
    /// The fleet `settings` ask for, shipping `store`'s outbox and teaching `engine`: `current`
    /// when neither its settings nor its store changed, else a new one (nil without `fleet:`).
    public static func opened(
        for settings: DaemonConfig.Fleet?, store: FeedbackStore?, engine: Engine, reusing current: FleetSync?, previousStore: FeedbackStore?,
        logger: Logger
    ) throws(FleetError) -> FleetSync? {
        guard let settings else { return nil }
        let outbox = settings.share.contains(.outcomes) ? store.flatMap { $0.writesOutbox ? $0 : nil } : nil
        if let current, current.settings == settings, store === previousStore { return current }
        let fleet = try FleetSync(
            settings: settings,
            outbox: outbox.map { store in
                FleetSync.Outbox(
                    directory: store.settings.directory, lastWritten: { [store] in store.lastOutboxSeq },
                    compact: { [store] offset in
                        do throws(FeedbackStoreError) {
                            try store.compactOutbox(before: offset)
                            return nil
                        } catch {
                            return error.description
                        }
                    })
            },
            engine: engine, logger: logger)
        outbox?.observeOutbox { [fleet] in fleet.outboxGrew() }
        return fleet
    }
}

extension FleetStats {
    init(_ status: FleetStatus) {
        self.init(
            name: status.name, host: status.host, source: status.source, connected: status.connected, outboxDepth: status.outboxDepth,
            shipped: status.shipped, received: status.received, skipped: status.skipped, lagP50Ms: status.lagP50Milliseconds,
            lagP99Ms: status.lagP99Milliseconds, lastError: status.lastError, share: status.share, budgetExchanges: status.budgetExchanges,
            budgetHosts: status.budgetPeers, sessionsShipped: status.sessionsShipped, sessionsReceived: status.sessionsReceived,
            compactions: status.compactions)
    }
}
