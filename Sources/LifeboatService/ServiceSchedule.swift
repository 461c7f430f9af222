/// LifeboatService owns `lifeboat serve`: the schedule of automated backups (inside the seed's
/// backup window), retention, mirror catch-up, verification and monthly drills; the live state of
/// archiving and of the repository as Prometheus metrics, a health check and a JSON status over HTTP.
import Foundation
import LifeboatCore


/// What `serve` runs and when. Backups follow the repository (the newest automated backup's start),
/// so a restart of the daemon neither repeats nor skips one; verify follows the daemon's state;
/// drills follow the drill history kept in the repository.
public struct ServiceSchedule: Sendable, Equatable, Codable {
    /// Automated backups only inside this window (nil: whenever one is due).
    public var backupWindow: BackupWindow?
    /// Time between automated backups (nil: the daemon takes none).
    public var backupEvery: TimeInterval?
    /// Time between full repository verifications (nil: never).
    public var verifyEvery: TimeInterval?
    /// Time between drills (nil: never; the seed's is monthly).
    public var drillEvery: TimeInterval?
    /// After a failed job, wait this long before trying it again.
    public var retryAfter: TimeInterval

    public init(backupWindow: BackupWindow? = nil, backupEvery: TimeInterval? = 86400, verifyEvery: TimeInterval? = nil,
        drillEvery: TimeInterval? = nil, retryAfter: TimeInterval = 600)
    {
        self.backupWindow = backupWindow
        self.backupEvery = backupEvery
        self.verifyEvery = verifyEvery
        self.drillEvery = drillEvery
        self.retryAfter = retryAfter
    }

    /// Why a job is due now, or nil.
    public struct Due: Sendable, Equatable {
        public var reason: String
    }

    /// Whether an automated backup is due.
    ///
    /// - No backup at all: at once (there is nothing to restore from).
    /// - Inside the window: when the last one started at least `every` minus the window's length ago
    ///   (so a daily backup lands in every day's window, wherever in the window the last one fell).
    /// - Outside the window: only when a whole cycle was missed (the daemon was down, or every
    ///   attempt inside the window failed): a late backup beats none.
    public func backupDue(lastStart: Date?, lastFailure: Date?, now: Date) -> Due? {
        guard let every = backupEvery else { return nil }
        if let failed = lastFailure, now < failed.addingTimeInterval(retryAfter), failed > (lastStart ?? .distantPast) { return nil }
        guard let last = lastStart else { return Due(reason: "no automated backup yet") }
        guard let window = backupWindow else {
            return now.timeIntervalSince(last) >= every ? Due(reason: "every \(HumanDuration.format(every))") : nil
        }
        let slack = min(window.lengthSeconds, every / 2)
        if window.occurrence(containing: now) != nil, now.timeIntervalSince(last) >= every - slack {
            return Due(reason: "backup window \(window)")
        }
        if now.timeIntervalSince(last) >= every + window.lengthSeconds {
            return Due(reason: "missed backup window \(window): the last automated backup started \(HumanDuration.format(now.timeIntervalSince(last))) ago")
        }
        return nil
    }

    /// When the next automated backup is planned (for status and alerts), if any.
    public func nextBackup(lastStart: Date?, now: Date) -> Date? {
        guard let every = backupEvery else { return nil }
        guard let last = lastStart else { return now }
        guard let window = backupWindow else { return max(now, last.addingTimeInterval(every)) }
        let earliest = max(now, last.addingTimeInterval(every - min(window.lengthSeconds, every / 2)))
        return window.occurrence(containing: earliest) != nil ? earliest : window.nextStart(atOrAfter: earliest)
    }

    /// Whether a periodic job (verify, drill) is due.
    public static func periodicDue(every: TimeInterval?, last: Date?, lastFailure: Date?, retryAfter: TimeInterval, now: Date) -> Due? {
        guard let every else { return nil }
        if let failed = lastFailure, failed > (last ?? .distantPast), now < failed.addingTimeInterval(retryAfter) { return nil }
        guard let last else { return Due(reason: "never run") }
        return now.timeIntervalSince(last) >= every ? Due(reason: "every \(HumanDuration.format(every))") : nil
    }

    /// How old the newest backup may get before the service is unhealthy: one cycle plus the window,
    /// plus an hour for the backup itself.
    public var maxBackupAge: TimeInterval? {
        backupEvery.map { $0 + (backupWindow?.lengthSeconds ?? 0) + 3600 }
    }
}
