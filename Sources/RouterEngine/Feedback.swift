import RouterConfig
import RouterVocabulary
import StableHash
import Synchronization

/// How a model did on a prompt, as a service reports it.
public enum OutcomeValue: Sendable, Hashable {
    /// Against another candidate: a win, a loss or a tie for the reported model.
    case pairwise(PairwiseResult, against: String)
    /// A quality in [0, 1]: a thumbs-up (1) or down (0), a test that passed, a grader's score.
    case pointwise(Double)
    /// The model's call failed (an error, a timeout, a refusal): learned as quality 0, counted apart.
    case failed

    /// The quality it teaches, for one-model outcomes.
    public var quality: Double? {
        switch self {
        case .pairwise: nil
        case .pointwise(let quality): quality
        case .failed: 0
        }
    }
}

/// A feedback report as a service sends it: about a remembered decision, or about a prompt
/// (for outcomes that arrive after the decision was forgotten).
public struct FeedbackReport: Sendable, Hashable {
    public enum Subject: Sendable, Hashable {
        case decision(id: String)
        case prompt(router: String, text: String)
    }

    public var subject: Subject
    public var model: String
    public var value: OutcomeValue

    public init(subject: Subject, model: String, value: OutcomeValue) {
        self.subject = subject
        self.model = model
        self.value = value
    }
}

/// Who sends a feedback report, as the engine judges it.
public struct Reporter: Sendable, Hashable {
    /// Who reports: a peer's uid (SO_PEERCRED) or a gateway key; nil when it could not be told.
    public var requester: Requester?
    /// Trusted peers (root, and `feedback.allow`) may report on any decision and on a prompt by
    /// router; any other reporter only on a decision it asked for itself.
    public var trusted: Bool

    public init(_ requester: Requester?, trusted: Bool) {
        self.requester = requester
        self.trusted = trusted
    }

    /// A local peer, by its uid.
    public init(uid: UInt32?, trusted: Bool) {
        self.init(uid.map(Requester.uid), trusted: trusted)
    }
}

/// A report the engine accepted: the prompt it is about and models its router chooses among.
public struct Outcome: Sendable, Hashable {
    public var router: String
    public var prompt: String
    /// The decision it names, when it named one.
    public var decisionID: String?
    public var model: String
    public var value: OutcomeValue
    /// The decision's propensity and whether it explored, when it named one of a router that explores.
    public var propensity: Double? = nil
    public var explored: Bool? = nil

    /// Public for outcomes from elsewhere than this daemon's own requests: another daemon of the fleet.
    public init(
        router: String, prompt: String, decisionID: String? = nil, model: String, value: OutcomeValue, propensity: Double? = nil,
        explored: Bool? = nil
    ) {
        self.router = router
        self.prompt = prompt
        self.decisionID = decisionID
        self.model = model
        self.value = value
        self.propensity = propensity
        self.explored = explored
    }
}

/// The recent decisions a `feedback` can name by id: the prompt, the router and its candidates.
///
/// Bounded by count, by the bytes of prompt text held and by age (the config's
/// `feedback.decisions`); kept by the engine, so a decision made before a reload can still be
/// named after it. With no `feedback:` configured nothing is remembered.
final class DecisionMemory: Sendable {
    struct Remembered: Sendable {
        var router: String
        var prompt: String
        /// Who asked for the decision (a uid or a gateway key): the one reporter, besides trusted ones, that may report on it.
        var requester: Requester?
        /// The router's own array, shared rather than copied: remembering allocates nothing.
        var candidates: [Candidate]
        /// With exploration: the probability the decision's model was chosen with, and whether it explored.
        var propensity: Double? = nil
        var explored: Bool? = nil
    }

    private let table: Mutex<ExpiringLRU<Remembered>?>

    init(_ settings: DaemonConfig.Feedback?) {
        table = Mutex(nil)
        configure(settings)
    }

    /// Takes a generation's settings; remembered decisions stay unless feedback was turned off.
    func configure(_ settings: DaemonConfig.Feedback?) {
        table.withLock { table in
            guard let settings else {
                table = nil
                return
            }
            if table == nil {
                table = ExpiringLRU(ttl: settings.decisionTTLSeconds, maxEntries: settings.maxDecisions, maxCost: settings.maxDecisionBytes)
            } else {
                table?.ttl = settings.decisionTTLSeconds
                table?.maxEntries = settings.maxDecisions
                table?.maxCost = settings.maxDecisionBytes
            }
        }
    }

    var count: Int { table.withLock { $0?.count ?? 0 } }
    var bytes: Int { table.withLock { $0?.totalCost ?? 0 } }
    var ttl: Double? { table.withLock { $0?.ttl } }

    func remember(_ id: String, _ decision: Remembered, now: Double) {
        table.withLock { $0?.set(id, decision, cost: decision.prompt.utf8.count + 64, now: now) }
    }

    func recall(_ id: String, now: Double) -> Remembered? {
        table.withLock { $0?.value(for: id, now: now) }
    }

    /// A new decision id: 128 bits from the system's CSPRNG (getrandom), as 32 hex digits. An id is
    /// what lets a `feedback` name a decision, so no client may be able to guess another's: an id
    /// derived from a seed and a counter could be inverted from one id a client was given.
    func newID() -> String {
        var random = SystemRandomNumberGenerator()
        return FNV1a.hex(random.next()) + FNV1a.hex(random.next())
    }
}
