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

    /// Lines for `postgresql.auto.conf` that make PostgreSQL stop at this target and promote.
    public func recoverySettings() -> [String: String] {
        var s: [String: String] = [:]
        switch self {
        case .latest: break
        case .time(let d): s["recovery_target_time"] = Timestamp.postgres(d)
        case .lsn(let l): s["recovery_target_lsn"] = l.description
        case .xid(let x): s["recovery_target_xid"] = String(x)
        case .name(let n): s["recovery_target_name"] = n
        case .immediate: s["recovery_target"] = "immediate"
        }
        if self != .latest { s["recovery_target_action"] = "promote" }
        return s
    }

    /// Picks the backup to restore from for this target: the newest backup that is consistent
    /// before the target (so the least WAL is replayed). A named restore point cannot be located
    /// without reading WAL, so the oldest backup is used: replay from it passes any later point.
    public func chooseBackup(from backups: [BackupRecord]) throws -> BackupRecord {
        let sorted = backups.sorted { $0.stopTime < $1.stopTime }
        guard let newest = sorted.last, let oldest = sorted.first else {
            throw LifeboatError(.notFound, "the repository has no backups", hint: "take one with `lifeboat backup`")
        }
        let candidate: BackupRecord?
        switch self {
        case .latest, .immediate: candidate = newest
        case .time(let d): candidate = sorted.last { $0.stopTime <= d }
        case .lsn(let l): candidate = sorted.last { $0.stopLSN <= l }
        case .xid(let x): candidate = sorted.last { ($0.nextXidAtStop ?? UInt64.max) <= x } ?? oldest
        case .name: candidate = oldest
        }
        guard let chosen = candidate else {
            throw LifeboatError(.notFound, "no backup is consistent before the target \(self)",
                hint: "the earliest restorable point is the end of backup \(oldest.id) at \(Timestamp.format(oldest.stopTime)) (lsn \(oldest.stopLSN))")
        }
        return chosen
    }
}
