import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Crash and pause points for fault tests. When `LIFEBOAT_FAULT_KILL_AT` names a point, the process
/// sends itself SIGKILL on reaching it: the same as `kill -9` at exactly that moment. When
/// `LIFEBOAT_FAULT_PAUSE_AT` names it, the process writes `$LIFEBOAT_FAULT_PAUSE_FILE.reached` and
/// waits there until the test removes `LIFEBOAT_FAULT_PAUSE_FILE` (to change the world mid-way:
/// promote a standby during its backup). Points: `backup.started` (after pg_backup_start),
/// `backup.chunks:N` (after N chunks stored), `backup.stopped` (after pg_backup_stop),
/// `backup.manifest` (file list written, not committed).
public enum FaultPoint {
    static let requested = ProcessInfo.processInfo.environment["LIFEBOAT_FAULT_KILL_AT"]
    static let pauseAt = ProcessInfo.processInfo.environment["LIFEBOAT_FAULT_PAUSE_AT"]
    static let pauseFile = ProcessInfo.processInfo.environment["LIFEBOAT_FAULT_PAUSE_FILE"]

    /// True when a crash point is requested at all (so callers skip the bookkeeping otherwise).
    public static var isArmed: Bool { requested != nil }

    public static func reached(_ point: String) {
        if let requested, requested == point {
            raise(SIGKILL)
        }
        if let pauseAt, pauseAt == point, let pauseFile {
            FileManager.default.createFile(atPath: pauseFile + ".reached", contents: Data())
            while FileManager.default.fileExists(atPath: pauseFile) { usleep(50_000) }
        }
    }

    /// For counted points (`name:N`): kills when `count` reaches N.
    public static func counted(_ name: String, _ count: Int) {
        if let requested, requested == "\(name):\(count)" {
            raise(SIGKILL)
        }
    }
}
