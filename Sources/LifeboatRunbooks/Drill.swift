/// LifeboatRunbooks owns proving recovery: DR drills with measured RTO/RPO and their reports, and
/// executable, journaled incident runbooks. It drives the repository and the PostgreSQL engine; it
/// never reads repository objects or PGDATA itself.
import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The seed's RTO/RPO validation scenarios that a drill can run against a scratch target.
public enum DrillScenario: String, Codable, Sendable, CaseIterable {
    /// Take a manual snapshot and restore it (seed target: 30 minutes).
    case snapshotRestore = "snapshot-restore"
    /// Restore the newest backup plus all archived WAL, as after losing production now (seed: 45 minutes).
    case pointInTime = "point-in-time"
    /// Run the team's service-restart runbook and time it to healthy (seed: 10 minutes).
    case serviceRestart = "service-restart"
    /// Run the team's full-rebuild runbook (infrastructure, data, services) and time it (seed: 4 hours).
    case fullRebuild = "full-rebuild"

    /// The seed's objectives: RTO per scenario, RPO 5 minutes.
    public var defaultObjectives: DrillObjectives {
        switch self {
        case .snapshotRestore: return DrillObjectives(rtoSeconds: 30 * 60, rpoSeconds: nil)
        case .pointInTime: return DrillObjectives(rtoSeconds: 45 * 60, rpoSeconds: 5 * 60)
        case .serviceRestart: return DrillObjectives(rtoSeconds: 10 * 60, rpoSeconds: nil)
        case .fullRebuild: return DrillObjectives(rtoSeconds: 4 * 3600, rpoSeconds: nil)
        }
    }

    /// Scenarios measured by running a runbook rather than by a restore lifeboat drives itself.
    public var runsARunbook: Bool { self == .serviceRestart || self == .fullRebuild }

    /// A built-in runbook to start from (copy it with `lifeboat runbook show` and adapt it).
    public var suggestedRunbook: String? {
        switch self {
        case .serviceRestart: return "builtin:service-outage"
        case .fullRebuild: return "builtin:regional-outage"
        default: return nil
        }
    }
}

public struct DrillObjectives: Codable, Sendable, Equatable {
    public var rtoSeconds: Double
    /// nil where data loss is not what the scenario measures (restoring a chosen snapshot).
    public var rpoSeconds: Double?

    public init(rtoSeconds: Double, rpoSeconds: Double?) {
        self.rtoSeconds = rtoSeconds
        self.rpoSeconds = rpoSeconds
    }
}

/// A check run on the restored cluster: SQL whose single value must equal `expect` or lie
/// within `min`...`max` (numbers).
public struct DrillCheck: Codable, Sendable, Equatable {
    public var name: String
    public var sql: String
    public var expect: String?
    public var min: Double?
    public var max: Double?

    public init(name: String, sql: String, expect: String? = nil, min: Double? = nil, max: Double? = nil) {
        self.name = name
        self.sql = sql
        self.expect = expect
        self.min = min
        self.max = max
    }
}

public struct DrillOptions: Sendable {
    public var scenario: DrillScenario
    /// The production cluster (read only, apart from a WAL switch and, for snapshot-restore, a backup).
    public var production: PostgresEndpoint
    public var pgdata: String
    /// Where scratch clusters are created; each drill uses a new directory below it.
    public var scratchRoot: String
    /// How the scratch cluster calls Lifeboat back (`restore_command`).
    public var invocation: LifeboatInvocation
    public var binDirectory: String?
    public var objectives: DrillObjectives
    public var checks: [DrillCheck]
    /// Keep the snapshot taken by a snapshot-restore drill (the seed deletes it).
    public var keepBackup: Bool
    /// Leave the scratch cluster running for inspection instead of removing it.
    public var keepScratch: Bool
    public var walTimeout: TimeInterval

    public init(scenario: DrillScenario, production: PostgresEndpoint, pgdata: String, scratchRoot: String = "/tmp",
        invocation: LifeboatInvocation, binDirectory: String? = nil,
        objectives: DrillObjectives? = nil, checks: [DrillCheck] = [], keepBackup: Bool = false, keepScratch: Bool = false,
        walTimeout: TimeInterval = 600)
    {
        self.scenario = scenario
        self.production = production
        self.pgdata = pgdata
        self.scratchRoot = scratchRoot
        self.invocation = invocation
        self.binDirectory = binDirectory
        self.objectives = objectives ?? scenario.defaultObjectives
        self.checks = checks
        self.keepBackup = keepBackup
        self.keepScratch = keepScratch
        self.walTimeout = walTimeout
    }
}

/// The evidence a drill leaves: what was restored, to which point, how long each phase took,
/// every check, and whether the objectives were met.
public struct DrillReport: Codable, Sendable {
    public struct Phase: Codable, Sendable {
        public var name: String
        public var seconds: Double
        /// Whether the phase counts toward the recovery time.
        public var countsTowardRTO: Bool
    }

    public struct CheckResult: Codable, Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    public var id: String
    public var scenario: DrillScenario
    public var host: String
    public var startedAt: Date
    public var finishedAt: Date
    /// Restore drills: the backup restored, the point meant (the snapshot's end, or "now" for
    /// point-in-time) and the point recovered (see `docs/runbooks.md`). Nil for runbook drills.
    public var backupID: String?
    public var backupStopTime: Date?
    public var targetTime: Date?
    public var achievedTime: Date?
    /// Runbook drills: the runbook and its run (journal) id.
    public var runbook: String?
    public var runID: String?
    public var achievedLSN: String?
    public var productionLSNAtTarget: String?
    public var archiveLagSeconds: Double?
    public var phases: [Phase]
    /// Sum of the phases that count toward recovery: restore, recover and promote, verify.
    public var rtoSeconds: Double
    /// `targetTime - achievedTime`; nil for runbook drills (they do not measure data loss).
    public var rpoSeconds: Double?
    public var objectives: DrillObjectives
    public var checks: [CheckResult]
    public var rtoMet: Bool
    public var rpoMet: Bool?
    public var passed: Bool
    public var scratchDirectory: String?
    public var error: String?
}

/// Runs a drill: snapshot or pick a backup, restore to a scratch cluster that never archives and
/// listens on loopback only, verify, measure, clean up, and record the report in the repository.
public struct Drill: Sendable {
    public var repository: Repository
    public var logger: Logger

    public init(repository: Repository, logger: Logger) {
        self.repository = repository
        self.logger = logger
    }

    public func run(_ options: DrillOptions, progress: @Sendable (String) -> Void = { _ in }) async throws -> DrillReport {
        guard !options.scenario.runsARunbook else {
            throw LifeboatError(.invalidUsage, "the \(options.scenario.rawValue) drill runs a runbook",
                hint: "pass --runbook (start from \(options.scenario.suggestedRunbook ?? "a built-in runbook"))")
        }
        let started = Date()
        let id = Self.drillID(started)
        let scratch = options.scratchRoot + "/lifeboat-drill-\(id)"
        var phases: [DrillReport.Phase] = []
        func timed<T>(_ name: String, rto: Bool, _ body: () async throws -> T) async throws -> T {
            progress("• \(name) ...")
            let t0 = Date()
            let value = try await body()
            phases.append(.init(name: name, seconds: Date().timeIntervalSince(t0), countsTowardRTO: rto))
            progress("  done in \(HumanDuration.format(Date().timeIntervalSince(t0)))")
            return value
        }

        // 1. The recovery point to prove.
        var productionLSN: LSN?
        var archiveLag: Double?
        let backup: BackupRecord
        let target: RecoveryTarget
        var targetTime: Date
        switch options.scenario {
        case .snapshotRestore:
            backup = try await timed("take a manual snapshot", rto: false) {
                try await BackupEngine(repository: repository, logger: logger).run(BackupOptions(pgdata: options.pgdata,
                    endpoint: options.production, kind: .manual, tags: ["Purpose": "dr-drill", "CreatedBy": "lifeboat-drill"],
                    retain: 86400, walTimeout: options.walTimeout)).backup
            }
            target = .immediate
            targetTime = backup.stopTime
        case .serviceRestart, .fullRebuild:
            throw LifeboatError(.internalError, "runbook drills are run by RunbookDrill")
        case .pointInTime:
            // "Production fails now": everything written up to this LSN must come back.
            let mark = try await timed("mark the recovery point and flush the archive", rto: false) {
                try await self.markAndFlush(options.production, timeout: options.walTimeout)
            }
            productionLSN = mark.lsn
            archiveLag = mark.lag
            targetTime = mark.time
            target = .latest
            backup = try await RestoreEngine(repository: repository, logger: logger).plan(RestoreOptions(destination: scratch,
                target: .latest, invocation: options.invocation)).backup
        }

        // 2. Restore into scratch, measured.
        let port = LocalCluster.freePort()
        let restoreOptions = RestoreOptions(destination: scratch, target: target, backupID: backup.id,
            invocation: options.invocation, archiveMode: .off, start: true, port: port, socketDirectory: options.scratchRoot,
            listenAddresses: "127.0.0.1", binDirectory: options.binDirectory,
            recoveryTimeout: max(options.objectives.rtoSeconds * 2, 600))
        let binaries = try PostgresBinaries.locate(explicit: options.binDirectory, majorVersion: backup.postgresVersion)
        let scratchCluster = LocalCluster(dataDirectory: scratch, port: port, socketDirectory: options.scratchRoot, binaries: binaries,
            user: OSUser.forServer(dataDirectory: scratch))
        var report: RestoreReport?
        var checks: [DrillReport.CheckResult] = []
        var failure: String?
        do {
            progress("• restore backup \(backup.id) into scratch \(scratch) (port \(port), archiving off) ...")
            let r = try await RestoreEngine(repository: repository, logger: logger).run(restoreOptions)
            for p in r.phases { phases.append(.init(name: p.name, seconds: p.seconds, countsTowardRTO: true)) }
            progress("  done in \(HumanDuration.format(r.totalSeconds))")
            report = r
            checks = try await timed("verify the restored cluster", rto: true) {
                try await DrillVerifier(cluster: scratchCluster, logger: logger).run(options.checks)
            }
        } catch let error as LifeboatError {
            failure = error.message
            checks.append(.init(name: "restore and start", passed: false, detail: error.message))
        }

        // 3. Clean up what the drill made.
        try await timed("clean up", rto: false) {
            if !options.keepScratch {
                try? await scratchCluster.stop(mode: "immediate")
                try? FileManager.default.removeItem(atPath: scratch)
                try? FileManager.default.removeItem(atPath: scratchCluster.logFile)
            }
            if options.scenario == .snapshotRestore, !options.keepBackup {
                try await repository.deleteBackup(backup)
            }
        }

        // 4. Measure. Achieved point: for point-in-time, if replay passed the LSN marked at the
        // start, everything up to that moment was recovered; otherwise the last replayed commit.
        var achieved = report?.achievedTime ?? backup.startTime
        if let mark = productionLSN, let reached = report?.achievedLSN.flatMap(LSN.init), reached >= mark {
            achieved = targetTime
        } else if options.scenario == .snapshotRestore {
            achieved = max(report?.achievedTime ?? backup.startTime, backup.startTime)
            targetTime = max(targetTime, achieved)
        }
        let rto = phases.filter(\.countsTowardRTO).reduce(0) { $0 + $1.seconds }
        let rpo = max(0, targetTime.timeIntervalSince(achieved))
        let rtoMet = failure == nil && rto <= options.objectives.rtoSeconds
        let rpoMet = options.objectives.rpoSeconds.map { failure == nil && rpo <= $0 }
        let passed = failure == nil && checks.allSatisfy(\.passed) && rtoMet && rpoMet != false
        let drill = DrillReport(id: id, scenario: options.scenario, host: ProcessInfo.processInfo.hostName, startedAt: started,
            finishedAt: Date(), backupID: backup.id, backupStopTime: backup.stopTime, targetTime: targetTime, achievedTime: achieved,
            runbook: nil, runID: nil, achievedLSN: report?.achievedLSN, productionLSNAtTarget: productionLSN?.description,
            archiveLagSeconds: archiveLag, phases: phases, rtoSeconds: rto, rpoSeconds: rpo, objectives: options.objectives, checks: checks, rtoMet: rtoMet,
            rpoMet: rpoMet, passed: passed, scratchDirectory: scratch, error: failure)
        try await DrillHistory.record(drill, in: repository)
        return drill
    }

    /// Notes the current LSN and time on production, switches WAL and waits until the segment
    /// holding that LSN is in this repository.
    func markAndFlush(_ endpoint: PostgresEndpoint, timeout: TimeInterval) async throws -> (lsn: LSN, time: Date, lag: Double) {
        let session = try await PostgresSession.connect(endpoint, logger: logger)
        defer { Task { await session.close() } }
        let row = try await session.query("""
            SELECT pg_current_wal_lsn()::text, now()::text, pg_walfile_name(pg_current_wal_lsn()),
                   (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')
            """)[0]
        guard let lsn = LSN(row[0] ?? ""), let segmentName = row[2] ?? nil, let segment = WALSegment(name: segmentName) else {
            throw LifeboatError(.postgres, "cannot read the current WAL position")
        }
        let time = try Timestamp.parse(row[1] ?? "")
        let switched = Date()
        _ = try await session.query("SELECT pg_switch_wal()")
        let deadline = Date().addingTimeInterval(timeout)
        while try await repository.store.info(Repository.walKey(.segment(segment))) == nil {
            guard Date() < deadline else {
                throw LifeboatError(.timeout, "WAL segment \(segmentName) did not reach the repository within \(HumanDuration.format(timeout))",
                    hint: "check archive_command; the archive is behind, which is itself an RPO problem")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return (lsn, time, Date().timeIntervalSince(switched))
    }

    static func drillID(_ date: Date) -> String { TimestampID.make(date) }

}

/// Drill reports kept in the repository under `drills/<id>`, so the evidence survives the host.
public enum DrillHistory {
    static func key(_ id: String) -> String { "drills/\(id)" }

    static func record(_ report: DrillReport, in repository: Repository) async throws {
        try await repository.writeRecord(key(report.id), report)
    }

    /// Every recorded drill, oldest first.
    public static func all(_ repository: Repository) async throws -> [DrillReport] {
        var reports: [DrillReport] = []
        for info in try await repository.store.list(prefix: "drills/") {
            reports.append(try await repository.readRecord(info.key, as: DrillReport.self))
        }
        return reports.sorted { $0.startedAt < $1.startedAt }
    }
}
