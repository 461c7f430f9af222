import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatService
import Testing

/// The backup window and the schedule's decisions, as pure functions of the clock.
struct ScheduleTests {
    /// 2026-11-29 00:00:00 UTC.
    let day = Date(timeIntervalSince1970: 1_795_910_400)
    func at(_ hours: Double, day offset: Double = 0) -> Date { day.addingTimeInterval(offset * 86400 + hours * 3600) }

    @Test func windowParsesAndRefusesNonsense() throws {
        let w = try BackupWindow.parse("03:00-04:00")
        #expect(w.lengthSeconds == 3600 && w.description == "03:00-04:00")
        #expect(try BackupWindow.parse("23:30-00:30").lengthSeconds == 3600)
        for bad in ["3-4", "03:00", "25:00-26:00", "03:00-03:00", "03:60-04:00", "a:b-c:d"] {
            #expect(throws: LifeboatError.self, "\(bad)") { try BackupWindow.parse(bad) }
        }
    }

    @Test func windowOccurrencesIncludingOnePastMidnight() throws {
        let w = try BackupWindow.parse("03:00-04:00")
        #expect(w.occurrence(containing: at(3.5)) == at(3))
        #expect(w.occurrence(containing: at(4)) == nil, "the end is outside")
        #expect(w.occurrence(containing: at(2.99)) == nil)
        #expect(w.nextStart(atOrAfter: at(2)) == at(3))
        #expect(w.nextStart(atOrAfter: at(3)) == at(3))
        #expect(w.nextStart(atOrAfter: at(5)) == at(3, day: 1))
        let wrap = try BackupWindow.parse("23:30-00:30")
        #expect(wrap.occurrence(containing: at(0.25, day: 1)) == at(23.5))
        #expect(wrap.occurrence(containing: at(23.75)) == at(23.5))
        #expect(wrap.occurrence(containing: at(1, day: 1)) == nil)
    }

    @Test func dailyBackupsLandInTheWindowAndMissedOnesAreCaughtUp() throws {
        let s = ServiceSchedule(backupWindow: try BackupWindow.parse("03:00-04:00"), backupEvery: 86400, retryAfter: 600)
        #expect(s.backupDue(lastStart: nil, lastFailure: nil, now: at(12))?.reason == "no automated backup yet")
        // Yesterday's at 03:40; today's window opens at 03:00: due (within the window's slack).
        let yesterday = at(3 + 40.0 / 60, day: -1)
        #expect(s.backupDue(lastStart: yesterday, lastFailure: nil, now: at(2.9)) == nil, "before the window")
        #expect(s.backupDue(lastStart: yesterday, lastFailure: nil, now: at(3.01)) != nil)
        // Taken at 03:01 today: not again today, inside or outside the window.
        #expect(s.backupDue(lastStart: at(3.01), lastFailure: nil, now: at(3.5)) == nil)
        #expect(s.backupDue(lastStart: at(3.01), lastFailure: nil, now: at(20)) == nil)
        #expect(s.nextBackup(lastStart: at(3.01), now: at(20)) == at(3, day: 1))
        // The whole window missed (daemon down): caught up at once, and said so.
        let missed = try #require(s.backupDue(lastStart: yesterday, lastFailure: nil, now: at(4 + 41.0 / 60)))
        #expect(missed.reason.contains("missed backup window 03:00-04:00"))
        #expect(s.backupDue(lastStart: yesterday, lastFailure: nil, now: at(4.5)) == nil, "less than a cycle and a window")
        // A failure waits retry_after, then tries again; a failure before the last success does not.
        #expect(s.backupDue(lastStart: yesterday, lastFailure: at(3.1), now: at(3.2)) == nil)
        #expect(s.backupDue(lastStart: yesterday, lastFailure: at(3.1), now: at(3.1 + 11.0 / 60)) != nil)
        #expect(s.backupDue(lastStart: nil, lastFailure: at(3.1), now: at(3.15)) == nil, "even the first backup backs off")
    }

    @Test func withoutAWindowBackupsFollowTheInterval() {
        let s = ServiceSchedule(backupWindow: nil, backupEvery: 3600)
        #expect(s.backupDue(lastStart: at(1), lastFailure: nil, now: at(1.99)) == nil)
        #expect(s.backupDue(lastStart: at(1), lastFailure: nil, now: at(2))?.reason == "every \(HumanDuration.format(3600))")
        #expect(s.nextBackup(lastStart: at(1), now: at(1.5)) == at(2))
        let off = ServiceSchedule(backupWindow: nil, backupEvery: nil)
        #expect(off.backupDue(lastStart: nil, lastFailure: nil, now: at(1)) == nil && off.maxBackupAge == nil)
    }

    @Test func periodicJobs() {
        #expect(ServiceSchedule.periodicDue(every: nil, last: nil, lastFailure: nil, retryAfter: 60, now: at(1)) == nil)
        #expect(ServiceSchedule.periodicDue(every: 86400, last: nil, lastFailure: nil, retryAfter: 60, now: at(1))?.reason == "never run")
        #expect(ServiceSchedule.periodicDue(every: 86400, last: at(1), lastFailure: nil, retryAfter: 60, now: at(24.9)) == nil)
        #expect(ServiceSchedule.periodicDue(every: 86400, last: at(1), lastFailure: nil, retryAfter: 60, now: at(25)) != nil)
        #expect(ServiceSchedule.periodicDue(every: 86400, last: at(1), lastFailure: at(25), retryAfter: 60, now: at(25.01)) == nil)
    }

    @Test func serverSettingUnits() throws {
        #expect(try ServerSettings.bytes("16MB") == 16 << 20)
        #expect(try ServerSettings.bytes("1GB") == 1 << 30)
        #expect(try ServerSettings.seconds("60s") == 60 && ServerSettings.seconds("5min") == 300 && ServerSettings.seconds("0") == 0)
        #expect(throws: LifeboatError.self) { try ServerSettings.seconds("5 fortnights") }
    }

    /// Health names every reason; the metrics carry the same facts.
    @Test func healthAndMetricsFromASnapshot() throws {
        let now = at(12)
        let archiver = ArchiverStatus(observedAt: now, inRecovery: false, readyFiles: 3, lagSeconds: 400, unarchivedBytes: 50 << 20,
            archiveTimeoutSeconds: 60, archivedCount: 10, failedCount: 4, lastArchivedTime: at(11.8), lastFailedWAL: "000000010000000000000007",
            lastFailedTime: at(11.99))
        var jobs: [String: JobRecord] = [:]
        jobs["backup"] = JobRecord(startedAt: at(3), finishedAt: at(3.1), succeeded: false, reason: "backup window 03:00-04:00",
            message: "cannot connect", runs: 2, failures: 1, lastSuccessAt: at(3, day: -1), lastFailureAt: at(3.1))
        var s = ServiceSnapshot(now: now, repositoryLocation: "/r", schedule: ServiceSchedule(backupWindow: nil, backupEvery: 86400),
            rpoObjectiveSeconds: 300, repository: nil, repositoryError: nil, archiver: archiver, archiverError: nil, mirrors: [],
            lastDrill: nil, jobs: jobs, running: nil, nextBackup: at(13))
        let problems = s.health.problems
        #expect(problems.count == 3, "\(problems)")
        #expect(problems.contains { $0.contains("WAL archiving is failing: 000000010000000000000007") })
        #expect(problems.contains { $0.contains("archive lag \(HumanDuration.format(400)) exceeds the RPO objective \(HumanDuration.format(300))") })
        #expect(problems.contains { $0.contains("the last backup failed") && $0.contains("cannot connect") })
        let text = ServiceMetrics.render(s)
        for line in ["lifeboat_healthy 0.0", "lifeboat_archive_lag_seconds 400.0", "lifeboat_archive_ready_files 3.0",
            "lifeboat_archive_failing 1.0", "lifeboat_rpo_bound_seconds 460.0", "lifeboat_archiver_failed_total 4",
            "lifeboat_job_failures_total{job=\"backup\"} 1", "lifeboat_job_last_success{job=\"backup\"} 0.0",
            "lifeboat_wal_unarchived_bytes 52428800.0"]
        {
            #expect(text.contains(line + "\n"), "\(line) in:\n\(text)")
        }
        #expect(text.contains("# HELP lifeboat_archive_lag_seconds"))
        s.archiver = nil
        s.jobs = [:]
        #expect(s.health.healthy && ServiceMetrics.render(s).contains("lifeboat_healthy 1.0\n"))
    }
}
