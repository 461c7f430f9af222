import Foundation

/// How long backups are kept, as in the seed: automated backups keep a recovery window (7 days),
/// manual snapshots their own retention (30 days unless given per snapshot).
public struct RetentionPolicy: Sendable, Equatable, Codable {
    /// Any moment this far back must stay restorable from automated backups plus WAL.
    public var recoveryWindow: TimeInterval
    /// Default retention for manual backups taken without `--retain`.
    public var manualRetention: TimeInterval
    /// The newest this many automated backups are kept whatever their age: a floor of redundancy
    /// when backups stopped for longer than the window (a broken scheduler must not leave one).
    public var keepLast: Int

    public static let seedDefault = RetentionPolicy(recoveryWindow: 7 * 86400, manualRetention: 30 * 86400)

    public init(recoveryWindow: TimeInterval, manualRetention: TimeInterval, keepLast: Int = 0) {
        self.recoveryWindow = recoveryWindow
        self.manualRetention = manualRetention
        self.keepLast = keepLast
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        recoveryWindow = try c.decode(TimeInterval.self, forKey: .recoveryWindow)
        manualRetention = try c.decode(TimeInterval.self, forKey: .manualRetention)
        keepLast = try c.decodeIfPresent(Int.self, forKey: .keepLast) ?? 0
    }
}

/// What `expire` removes and why; computed without I/O.
public struct ExpirePlan: Sendable, Equatable {
    public struct Decision: Sendable, Equatable {
        public var backupID: String
        public var keep: Bool
        public var reason: String

        public init(backupID: String, keep: Bool, reason: String) {
            self.backupID = backupID
            self.keep = keep
            self.reason = reason
        }
    }

    public var decisions: [Decision]

    public var kept: [String] { decisions.filter(\.keep).map(\.backupID) }
    public var expired: [String] { decisions.filter { !$0.keep }.map(\.backupID) }

    /// Decides for each backup.
    ///
    /// - Automated: kept if it stopped inside the window, and the newest one that stopped before the
    ///   window start is kept too, since replay from it is what makes the window's first moments
    ///   restorable.
    /// - Manual: kept until `retainUntil` (or stop time plus the policy's manual retention).
    /// - The newest backup of all is never expired, whatever the policy says, nor the newest
    ///   `keepLast` automated ones.
    public static func make(backups: [BackupRecord], policy: RetentionPolicy, now: Date) -> ExpirePlan {
        let windowStart = now.addingTimeInterval(-policy.recoveryWindow)
        let automated = backups.filter { $0.kind == .automated }.sorted { $0.stopTime < $1.stopTime }
        let anchor = automated.last { $0.stopTime <= windowStart }
        let newest = backups.max { $0.stopTime < $1.stopTime }
        let floor = Set(automated.suffix(max(0, policy.keepLast)).map(\.id))
        var decisions: [Decision] = []
        for b in backups.sorted(by: { $0.stopTime < $1.stopTime }) {
            let decision: Decision
            switch b.kind {
            case .automated:
                if b.stopTime > windowStart {
                    decision = Decision(backupID: b.id, keep: true, reason: "inside the \(HumanDuration.format(policy.recoveryWindow)) recovery window")
                } else if b.id == anchor?.id {
                    decision = Decision(backupID: b.id, keep: true, reason: "base for the start of the recovery window")
                } else {
                    decision = Decision(backupID: b.id, keep: false, reason: "older than the recovery window")
                }
            case .manual:
                let until = b.retainUntil ?? b.stopTime.addingTimeInterval(policy.manualRetention)
                if until > now {
                    decision = Decision(backupID: b.id, keep: true, reason: "manual, retained until \(Timestamp.format(until))")
                } else {
                    decision = Decision(backupID: b.id, keep: false, reason: "manual, retention ended \(Timestamp.format(until))")
                }
            }
            if !decision.keep, b.id == newest?.id {
                decisions.append(Decision(backupID: b.id, keep: true, reason: "newest backup is always kept"))
            } else if !decision.keep, floor.contains(b.id) {
                decisions.append(Decision(backupID: b.id, keep: true, reason: "among the newest \(policy.keepLast) automated backups (keep_last)"))
            } else {
                decisions.append(decision)
            }
        }
        return ExpirePlan(decisions: decisions)
    }

    /// Whether the archived WAL file must be kept, given the backups that stay.
    ///
    /// Automated backups need every segment from the oldest kept automated backup's start onwards
    /// (that is what point-in-time recovery replays). Manual backups need only the segments from their
    /// start to their stop (enough to become consistent). History files are always kept: they are
    /// tiny and recovery reads them to find its timeline.
    public static func walNeeded(_ file: WALFileName, keptBackups: [BackupRecord]) -> Bool {
        let segment: WALSegment
        switch file {
        case .history: return true
        case .segment(let s), .partial(let s), .backupHistory(let s, _): segment = s
        }
        for b in keptBackups {
            let size = b.walSegmentSize
            let n = segment.number(segmentSize: size)
            let start = b.startSegment.number(segmentSize: size)
            switch b.kind {
            case .automated:
                if n >= start { return true }
            case .manual:
                let stop = b.stopSegment.number(segmentSize: size)
                if n >= start, n <= stop { return true }
            }
        }
        return false
    }
}
