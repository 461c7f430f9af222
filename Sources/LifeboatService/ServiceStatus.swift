import Foundation
import LifeboatCore
import LifeboatPostgres
import LifeboatRepository
import Prometheus

/// What the repository looked like at the last observation.
public struct RepositoryObservation: Codable, Sendable, Equatable {
    public var observedAt: Date
    public var automatedBackups: Int
    public var manualBackups: Int
    public var newestBackupID: String?
    public var newestBackupStop: Date?
    public var newestAutomatedStart: Date?
    public var earliestRestorableTime: Date?
    public var latestRestorableTime: Date?
    public var lastArchivedWAL: String?
    public var walFiles: Int
    public var storedBytes: Int
    public var chunks: Int
    /// The newest backups (at most 200), for the recovery-window timeline.
    public var backups: [BackupMark] = []

    public init(_ summary: RepositorySummary, observedAt: Date) {
        backups = summary.backups.sorted { $0.stopTime < $1.stopTime }.suffix(200).map {
            BackupMark(id: $0.id, kind: $0.kind.rawValue, stop: $0.stopTime, tags: $0.tags)
        }
        self.observedAt = observedAt
        automatedBackups = summary.backups.filter { $0.kind == .automated }.count
        manualBackups = summary.backups.filter { $0.kind == .manual }.count
        let newest = summary.backups.max { $0.stopTime < $1.stopTime }
        newestBackupID = newest?.id
        newestBackupStop = newest?.stopTime
        newestAutomatedStart = summary.backups.filter { $0.kind == .automated }.map(\.startTime).max()
        earliestRestorableTime = summary.earliestRestorableTime
        latestRestorableTime = summary.latestRestorableTime
        lastArchivedWAL = summary.lastArchivedWAL
        walFiles = summary.walFiles
        storedBytes = summary.totalBytes
        chunks = summary.chunkCount
    }
}

/// One backup on the dashboard's timeline.
public struct BackupMark: Codable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var stop: Date
    public var tags: [String: String]
}

/// What the dashboard says the service protects and against which objectives.
public struct ProtectedCluster: Codable, Sendable, Equatable {
    public var host: String?
    public var port: Int?
    public var dataDirectory: String?
    /// The Aurora cluster of the `aws:` section, if any.
    public var awsCluster: String?
    public var awsRegion: String?
    /// Where a second copy of the backups goes (mirror repositories, the second AWS region); empty:
    /// none, which the dashboard warns about.
    public var secondCopies: [String] = []
    /// The overall RTO objective (the seed's 4 hours) and the retention's recovery window.
    public var rtoObjectiveSeconds: Double = 4 * 3600
    public var recoveryWindowTargetSeconds: Double?

    public init(host: String? = nil, port: Int? = nil, dataDirectory: String? = nil, awsCluster: String? = nil, awsRegion: String? = nil) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.awsCluster = awsCluster
        self.awsRegion = awsRegion
    }

    /// `host:port data-directory` (or the Aurora cluster), for titles.
    public var name: String {
        var parts: [String] = []
        if let host { parts.append(port.map { "\(host):\($0)" } ?? host) }
        if let dataDirectory { parts.append(dataDirectory) }
        if let awsCluster { parts.append("Aurora \(awsCluster)\(awsRegion.map { " (\($0))" } ?? "")") }
        return parts.isEmpty ? "unnamed cluster" : parts.joined(separator: " · ")
    }
}

/// The newest drill, as the repository's drill history has it.
public struct DrillObservation: Codable, Sendable, Equatable {
    public var id: String
    public var scenario: String
    public var startedAt: Date
    public var passed: Bool
    public var rtoSeconds: Double
    public var rtoObjectiveSeconds: Double
    public var rpoSeconds: Double?
    public var rpoObjectiveSeconds: Double? = nil
}

/// Everything `serve` knows at one moment: the basis of /status, /metrics and /healthz.
public struct ServiceSnapshot: Codable, Sendable {
    public var now: Date
    public var repositoryLocation: String
    public var schedule: ServiceSchedule
    public var rpoObjectiveSeconds: Double
    public var repository: RepositoryObservation?
    public var repositoryError: String?
    public var archiver: ArchiverStatus?
    public var archiverError: String?
    public var mirrors: [MirrorStatus]
    public var lastDrill: DrillObservation?
    public var jobs: [String: JobRecord]
    public var running: String?
    public var nextBackup: Date?
    /// `serve` on every node of an HA cluster: which node backs up, and why.
    public var backupNode: BackupNodeElection.Choice?
    /// What is protected, and the objectives the dashboard shows the figures against.
    public var protected = ProtectedCluster()
    /// The drills behind `lastDrill`, oldest first (at most 24), for the chart.
    public var drillHistory: [DrillObservation] = []
    /// When the next drill is due (serve's own or the AWS drill), if one is scheduled.
    public var nextDrill: Date?
    public var health: HealthReport { HealthReport(self) }

    public init(now: Date, repositoryLocation: String, schedule: ServiceSchedule, rpoObjectiveSeconds: Double,
        repository: RepositoryObservation?, repositoryError: String?, archiver: ArchiverStatus?, archiverError: String?,
        mirrors: [MirrorStatus], lastDrill: DrillObservation?, jobs: [String: JobRecord], running: String?,
        backupNode: BackupNodeElection.Choice? = nil, nextBackup: Date?)
    {
        self.backupNode = backupNode
        self.now = now
        self.repositoryLocation = repositoryLocation
        self.schedule = schedule
        self.rpoObjectiveSeconds = rpoObjectiveSeconds
        self.repository = repository
        self.repositoryError = repositoryError
        self.archiver = archiver
        self.archiverError = archiverError
        self.mirrors = mirrors
        self.lastDrill = lastDrill
        self.jobs = jobs
        self.running = running
        self.nextBackup = nextBackup
    }
}

/// Whether the service protects the cluster as configured, with every reason it does not.
public struct HealthReport: Codable, Sendable {
    public var healthy: Bool
    public var problems: [String]

    public init(_ s: ServiceSnapshot) {
        var problems: [String] = []
        if let e = s.repositoryError { problems.append("repository unreachable: \(e)") }
        if let e = s.archiverError { problems.append("cannot read the archiver's state: \(e)") }
        if let e = s.backupNode?.error { problems.append("cannot ask Patroni which node backs up: \(e); this node does not back up") }
        if let a = s.archiver {
            if a.failing {
                problems.append("WAL archiving is failing: \(a.lastFailedWAL ?? "a file") failed at \(a.lastFailedTime.map(Timestamp.format) ?? "?"), \(a.readyFiles) file(s) waiting")
            }
            if a.lagSeconds > s.rpoObjectiveSeconds {
                problems.append("archive lag \(HumanDuration.format(a.lagSeconds)) exceeds the RPO objective \(HumanDuration.format(s.rpoObjectiveSeconds))")
            }
        }
        if let r = s.repository, let maxAge = s.schedule.maxBackupAge {
            if let stop = r.newestBackupStop {
                let age = s.now.timeIntervalSince(stop)
                if age > maxAge { problems.append("the newest backup is \(HumanDuration.format(age)) old (expected within \(HumanDuration.format(maxAge)))") }
            } else {
                problems.append("no backup in the repository")
            }
        }
        for job in ServiceJob.allCases {
            if let j = s.jobs[job.rawValue], j.succeeded == false {
                problems.append("the last \(job.rawValue) failed at \(j.finishedAt.map(Timestamp.format) ?? "?"): \(j.message)")
            }
        }
        self.problems = problems
        healthy = problems.isEmpty
    }
}

/// The snapshot in Prometheus' text format (a fresh registry per scrape: no stale label sets).
public enum ServiceMetrics {
    public static func render(_ s: ServiceSnapshot) -> String {
        let registry = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ help: String, _ value: Double?, _ labels: [(String, String)] = []) {
            guard let value else { return }
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels).set(value)
        }
        func counter(_ name: String, _ help: String, _ value: Int, _ labels: [(String, String)]) {
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
                .increment(by: Int64(value))
        }
        let now = s.now
        let epoch = { (d: Date?) in d.map(\.timeIntervalSince1970) }
        let age = { (d: Date?) in d.map { max(0, now.timeIntervalSince($0)) } }
        gauge("lifeboat_healthy", "1 when /healthz finds no problem", s.health.healthy ? 1 : 0)
        gauge("lifeboat_rpo_objective_seconds", "The RPO objective archive lag is held to", s.rpoObjectiveSeconds)
        gauge("lifeboat_repository_up", "1 when the last repository observation succeeded", s.repositoryError == nil ? 1 : 0)
        if let r = s.repository {
            gauge("lifeboat_backups", "Backups in the repository", Double(r.automatedBackups), [("kind", "automated")])
            gauge("lifeboat_backups", "Backups in the repository", Double(r.manualBackups), [("kind", "manual")])
            gauge("lifeboat_last_backup_timestamp_seconds", "When the newest backup stopped", epoch(r.newestBackupStop))
            gauge("lifeboat_last_backup_age_seconds", "Age of the newest backup", age(r.newestBackupStop))
            gauge("lifeboat_recovery_window_start_timestamp_seconds", "Earliest restorable time", epoch(r.earliestRestorableTime))
            gauge("lifeboat_recovery_window_end_timestamp_seconds", "Latest restorable time (newest archived WAL)", epoch(r.latestRestorableTime))
            gauge("lifeboat_repository_stored_bytes", "Bytes stored in the repository", Double(r.storedBytes))
            gauge("lifeboat_repository_chunks", "Chunk objects in the repository", Double(r.chunks))
            gauge("lifeboat_wal_archived_files", "WAL files in the repository", Double(r.walFiles))
            gauge("lifeboat_repository_observed_timestamp_seconds", "When the repository was last listed", epoch(r.observedAt))
        }
        gauge("lifeboat_next_backup_timestamp_seconds", "When the next automated backup is planned", epoch(s.nextBackup))
        gauge("lifeboat_archiver_up", "1 when the cluster's archiver state was read", s.archiver != nil ? 1 : (s.archiverError != nil ? 0 : nil))
        if let node = s.backupNode {
            gauge("lifeboat_backup_node", "1 when this node takes the scheduled backups of its HA cluster", node.thisNodeBacksUp ? 1 : 0,
                [("node", node.thisNode ?? ""), ("backup_node", node.backupNode ?? "")])
        }
        if let a = s.archiver {
            gauge("lifeboat_archive_lag_seconds", "How long the oldest completed WAL file has waited for archiving (live RPO)", a.lagSeconds)
            gauge("lifeboat_archive_ready_files", "WAL files waiting for archive_command", Double(a.readyFiles))
            gauge("lifeboat_wal_unarchived_bytes", "WAL written but not archived yet", Double(a.unarchivedBytes))
            gauge("lifeboat_archive_timeout_seconds", "archive_timeout (bounds the age of the current segment; 0 = off)", a.archiveTimeoutSeconds)
            gauge("lifeboat_rpo_bound_seconds", "Most a disaster now could lose: lag plus archive_timeout", a.rpoBoundSeconds)
            gauge("lifeboat_archive_failing", "1 when the archiver's last attempt failed after its last success", a.failing ? 1 : 0)
            counter("lifeboat_archiver_archived_total", "pg_stat_archiver.archived_count", Int(a.archivedCount), [])
            counter("lifeboat_archiver_failed_total", "pg_stat_archiver.failed_count", Int(a.failedCount), [])
            gauge("lifeboat_last_archived_timestamp_seconds", "pg_stat_archiver.last_archived_time", epoch(a.lastArchivedTime))
        }
        for r in s.mirrors {
            let labels = [("mirror", r.location)]
            gauge("lifeboat_mirror_up", "1 when the mirror repository could be read, 0 when unreachable", r.state == .unreachable ? 0 : 1, labels)
            gauge("lifeboat_mirror_missing_backups", "Backups a mirror repository lacks", r.state == .unreachable ? nil : Double(r.missingBackups.count), labels)
            gauge("lifeboat_mirror_missing_wal_files", "WAL files a mirror repository lacks", r.state == .unreachable ? nil : Double(r.missingWALFiles), labels)
        }
        if let d = s.lastDrill {
            let labels = [("scenario", d.scenario)]
            gauge("lifeboat_drill_last_timestamp_seconds", "When the newest drill started", epoch(d.startedAt), labels)
            gauge("lifeboat_drill_last_passed", "1 when the newest drill passed", d.passed ? 1 : 0, labels)
            gauge("lifeboat_drill_last_rto_seconds", "Measured RTO of the newest drill", d.rtoSeconds, labels)
            gauge("lifeboat_drill_rto_objective_seconds", "RTO objective of the newest drill", d.rtoObjectiveSeconds, labels)
            gauge("lifeboat_drill_last_rpo_seconds", "Measured RPO of the newest drill", d.rpoSeconds, labels)
        }
        for job in ServiceJob.allCases {
            let labels = [("job", job.rawValue)]
            gauge("lifeboat_job_running", "1 while the job runs", s.running == job.rawValue ? 1 : 0, labels)
            guard let j = s.jobs[job.rawValue] else { continue }
            counter("lifeboat_job_runs_total", "Runs of the job by this daemon's state", j.runs, labels)
            counter("lifeboat_job_failures_total", "Failed runs of the job", j.failures, labels)
            gauge("lifeboat_job_last_success", "1 when the job's last run succeeded", j.succeeded.map { $0 ? 1 : 0 }, labels)
            gauge("lifeboat_job_last_success_timestamp_seconds", "When the job last succeeded", epoch(j.lastSuccessAt), labels)
            gauge("lifeboat_job_last_duration_seconds", "How long the job's last run took", j.durationSeconds, labels)
        }
        return registry.emitToString()
    }
}
