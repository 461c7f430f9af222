import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Crash points for fault tests. When `LIFEBOAT_FAULT_KILL_AT` names a point, the process sends
/// itself SIGKILL on reaching it: the same as `kill -9` at exactly that moment. Points:
/// `backup.started` (after pg_backup_start), `backup.chunks:N` (after N chunks stored),
/// `backup.stopped` (after pg_backup_stop), `backup.manifest` (file list written, not committed).
public enum FaultPoint {
    static let requested = ProcessInfo.processInfo.environment["LIFEBOAT_FAULT_KILL_AT"]

    /// True when a crash point is requested at all (so callers skip the bookkeeping otherwise).
    public static var isArmed: Bool { requested != nil }

    public static func reached(_ point: String) {
        if let requested, requested == point {
            raise(SIGKILL)
        }
    }

    /// For counted points (`name:N`): kills when `count` reaches N.
    public static func counted(_ name: String, _ count: Int) {
        if let requested, requested == "\(name):\(count)" {
            raise(SIGKILL)
        }
    }
}
