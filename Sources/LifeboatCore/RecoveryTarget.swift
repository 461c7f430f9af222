import Foundation

/// Where point-in-time recovery stops.
public enum RecoveryTarget: Sendable, Equatable, CustomStringConvertible {
    /// Replay all archived WAL.
    case latest
    case time(Date)
    case lsn(LSN)
    case xid(UInt64)
    /// A restore point created with `pg_create_restore_point`.
    case name(String)
    /// Stop as soon as the backup is consistent.
    case immediate

    public var description: String {
        switch self {
        case .latest: return "latest"
        case .time(let d): return "time \(Timestamp.format(d))"
        case .lsn(let l): return "lsn \(l)"
        case .xid(let x): return "xid \(x)"
        case .name(let n): return "restore point '\(n)'"
        case .immediate: return "immediate (end of backup)"
        }
    }

    /// The recovery target settings for PostgreSQL: every `recovery_target*` key, the others empty and
    /// the chosen one last with its value, so a target left in any configuration file by an earlier
    /// restore cannot add a second one ("multiple recovery targets specified").
    ///
    /// The server promotes itself at the target, or, with `pauseAtTarget` (for a restore that starts
    /// the server and promotes it with `pg_promote`), pauses there. A server that promotes itself at a
    /// target writes an end-of-recovery checkpoint and accepts connections only after it (every
    /// buffer replay dirtied written and fsynced); one promoted by `pg_promote` writes an
    /// end-of-recovery record and checkpoints in the background, as a standby promoted in a
    /// failover does. `.latest` has no target to pause at and always promotes itself.
    public func recoverySettings(pauseAtTarget: Bool = false) -> [(key: String, value: String)] {
        var values = ["recovery_target": "", "recovery_target_lsn": "", "recovery_target_name": "", "recovery_target_time": "",
            "recovery_target_xid": ""]
        switch self {
        case .latest: break
        case .time(let d): values["recovery_target_time"] = Timestamp.postgres(d)
        case .lsn(let l): values["recovery_target_lsn"] = l.description
        case .xid(let x): values["recovery_target_xid"] = String(x)
        case .name(let n): values["recovery_target_name"] = n
        case .immediate: values["recovery_target"] = "immediate"
        }
        // Empty ones first: PostgreSQL's assign hooks refuse any recovery_target* assignment, even of
        // '', once another target is set, and apply them in file order.
        var settings = values.keys.sorted().filter { values[$0] == "" }.map { ($0, "") }
            + values.keys.sorted().filter { values[$0] != "" }.map { ($0, values[$0] ?? "") }
        settings.append(("recovery_target_inclusive", "on"))
        settings.append(("recovery_target_action", pauseAtTarget && self != .latest ? "pause" : "promote"))
        return settings
    }

    /// Picks the backup to restore from for this target along timeline `tli` of `graph`: among the
    /// backups on the line of `tli` (see `TimelineGraph.contains`), the newest consistent before the
    /// target (so the least WAL is replayed). A named restore point cannot be located without
    /// reading WAL, so the oldest is used: replay from it passes any later point.
    public func chooseBackup(from backups: [BackupRecord], along tli: UInt32, in graph: TimelineGraph) throws -> BackupRecord {
        guard !backups.isEmpty else {
            throw LifeboatError(.notFound, "the repository has no backups", hint: "take one with `lifeboat backup`")
        }
        let usable = backups.filter { graph.contains(backupTimeline: $0.timeline, stopLSN: $0.stopLSN, on: tli) }
            .sorted { $0.stopTime < $1.stopTime }
        guard let newest = usable.last, let oldest = usable.first else {
            let onOthers = Set(backups.map(\.timeline)).sorted().map(String.init).joined(separator: ", ")
            throw LifeboatError(.notFound, "no backup lies on the history of timeline \(tli) (backups are on timeline(s) \(onOthers))",
                hint: "restore along another timeline (--target-timeline), or take a backup of the cluster on timeline \(tli)")
        }
        let candidate: BackupRecord?
        switch self {
        case .latest, .immediate: candidate = newest
        case .time(let d): candidate = usable.last { $0.stopTime <= d }
        case .lsn(let l): candidate = usable.last { $0.stopLSN <= l }
        case .xid(let x): candidate = usable.last { ($0.nextXidAtStop ?? UInt64.max) <= x } ?? oldest
        case .name: candidate = oldest
        }
        guard let chosen = candidate else {
            throw LifeboatError(.notFound, "no backup on timeline \(tli)'s history is consistent before the target \(self)",
                hint: "the earliest restorable point on it is the end of backup \(oldest.id) at \(Timestamp.format(oldest.stopTime)) (lsn \(oldest.stopLSN))")
        }
        return chosen
    }
}
